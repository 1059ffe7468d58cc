-- scan: every finding behind a message's verdict (scan/policy Finding): [{"verdict": "infected", "detail": "…", "part": "…"}, …].
-- The verdict column stays the worst of them; null for records written before this column.
alter table messages add column findings jsonb;

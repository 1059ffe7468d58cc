-- web console: the message trace finds the notices and reports a message caused.
-- A notice's payload is the detection (its id is the message log id); a sender
-- notice or abuse report wraps it as payload.detection.
create index jobs_message on jobs ((coalesce(payload->>'id', payload->'detection'->>'id')));

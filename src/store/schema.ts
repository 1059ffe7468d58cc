/*
 * store/schema — the tables as Kysely sees them. One schema for PGlite and
 * PostgreSQL; the SQL that creates it lives in migrations.ts.
 */
import type { ColumnType, Generated } from 'kysely';

type Timestamp = ColumnType<Date, Date | string, Date | string>;
/** A timestamp the database fills in by default. */
type DefaultTimestamp = ColumnType<Date, Date | string | undefined, Date | string>;

export interface MessagesTable {
  id: string;
  received_at: Timestamp;
  node: string;
  client_ip: string;
  client_port: number;
  helo: string;
  mail_from: string;
  rcpt_to: string[];
  message_id: string | null;
  subject: string | null;
  size: number;
  verdict: string;
  verdict_detail: string | null;
  action: string;
  reply: string;
  scan_ms: number;
  quarantine_id: string | null;
  /** Every finding of the scan (kind, detail, part), worst first is not promised: in the order found. Null before 0040. */
  findings: ColumnType<RecordedFinding[] | null, string | null | undefined, string | null>;
}

/** One scan finding as the message record keeps it (migration 0040). */
export interface RecordedFinding {
  verdict: string;
  detail: string;
  part: string;
}

export interface QuarantineTable {
  id: string;
  created_at: DefaultTimestamp;
  message_log_id: string;
  client_ip: string;
  helo: string;
  mail_from: string;
  rcpt_to: string[];
  message_id: string | null;
  subject: string | null;
  verdict: string;
  verdict_detail: string | null;
  size: number;
  sha256: string;
  raw: Uint8Array;
  released_at: Timestamp | null;
  released_by: string | null;
  deleted_at: Timestamp | null;
}

export interface JobsTable {
  id: Generated<string>;
  kind: string;
  payload: unknown;
  state: Generated<string>;
  run_at: DefaultTimestamp;
  attempts: Generated<number>;
  max_attempts: Generated<number>;
  locked_by: string | null;
  locked_until: Timestamp | null;
  last_error: string | null;
  dedupe_key: string | null;
  created_at: DefaultTimestamp;
  done_at: Timestamp | null;
  /** When the job's mail was last handed to the relay, and by which worker (node:pid). */
  sending_at: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
  sent_by: Generated<string | null>;
  /** How many times its mail was handed to the relay (DATA started). */
  handoffs: Generated<number>;
  /** A worker died after handing the mail over and before marking it done: the recipient may have it twice. */
  possible_duplicate: Generated<boolean>;
}

export interface AuditTable {
  id: Generated<string>;
  at: DefaultTimestamp;
  actor: string;
  action: string;
  target: string;
  detail: unknown;
}

export interface NoticeNamesTable {
  name: string;
  first_seen_at: DefaultTimestamp;
}

export interface NoticeDigestItemsTable {
  id: Generated<string>;
  name: string;
  client_ip: string;
  created_at: DefaultTimestamp;
  /** The digest job that claimed it (migration 0102). */
  job_id: Generated<string | null>;
}

export interface AbuseSourcesTable {
  client_ip: string;
  window_start: Timestamp;
  window_end: Timestamp;
  streak: number;
  detections: number;
  last_seen: Timestamp;
  decision: string;
  job_id: string | null;
}

export interface AbuseHoursTable {
  hour: Timestamp;
  reports: number;
}

export interface AbuseOptoutsTable {
  contact: string;
  at: DefaultTimestamp;
  note: Generated<string>;
}

export interface AbuseContactsTable {
  id: Generated<string>;
  source: string;
  range: string;
  contact: string | null;
  detail: string;
  fetched_at: DefaultTimestamp;
  expires_at: Timestamp;
}

export interface AbuseReportsTable {
  job_id: string;
  client_ip: string;
  window_start: Timestamp;
  outcome: string;
  contact: string | null;
  source: string | null;
  steps: unknown;
  at: DefaultTimestamp;
}

export interface SenderNoticesTable {
  sender: string;
  day: string;
}

/** 0200: the one record a bounce or notice may leave (backscatter/record.ts). */
export interface BackscatterEventsTable {
  id: Generated<string>;
  received_at: DefaultTimestamp;
  client_ip: string;
  helo: string;
  class: string;
  format: string | null;
  verdict: string;
  action: string;
  reporting_mta: string | null;
  original_message_id: string | null;
  virus_name: string | null;
  reasons: string[];
}

/** 0200: per bouncing organisation, at most one complaint per 7 days (R7). */
export interface BackscatterComplaintsTable {
  organisation: string;
  last_sent_at: Timestamp | null;
  bounces_seen: Generated<number>;
  complaints_sent: Generated<number>;
}

/** 0201: BATV and Message-ID stamp keys (backscatter/keys.ts). */
export interface BackscatterKeysTable {
  id: Generated<string>;
  kind: string;
  num: number;
  secret: Uint8Array;
  created_at: DefaultTimestamp;
  retired_at: Timestamp | null;
}

export interface WebUsersTable {
  name: string;
  role: 'admin' | 'analyst';
  password_hash: string;
  created_at: DefaultTimestamp;
  updated_at: DefaultTimestamp;
  disabled_at: Timestamp | null;
}

export interface WebSessionsTable {
  id_hash: string;
  user_name: string;
  created_at: DefaultTimestamp;
  expires_at: Timestamp;
  last_seen_at: DefaultTimestamp;
  client_ip: string;
}

export interface WebSecretsTable {
  name: string;
  value: string;
  created_at: DefaultTimestamp;
}

export interface WebLoginThrottleTable {
  key: string;
  window_start: Timestamp;
  failures: number;
}

/** 0320, 0321: reports that reached the abuse desk (desk/intake.ts, web/public-form.ts) and what the desk's queue did with them (desk/queue.ts). */
export interface DeskReportsTable {
  id: Generated<string>;
  received_at: DefaultTimestamp;
  via: 'alias' | 'abuse' | 'form';
  reporter: string;
  ip: string | null;
  port: number | null;
  observed_at: ColumnType<Date | null, Date | string | null, Date | string | null>;
  time_source: string;
  zoneless: boolean;
  kind: 'arf' | 'x-arf' | 'free-text' | 'form';
  feedback_type: string | null;
  summary: string;
  headers: string | null;
  malware: string[];
  state: 'attributed' | 'unattributed' | 'forwarded' | 'dismissed';
  reason: string | null;
  customer_id: string | null;
  incident_id: string | null;
  /** 0321: a person assigned it from the queue (desk/queue.ts); customer_id is the assignee. */
  assigned_by: ColumnType<string | null, string | null | undefined, string | null>;
  assigned_at: NullableTimestamp;
  /** 0321: a person dismissed it from the queue, and why. */
  dismissed_by: ColumnType<string | null, string | null | undefined, string | null>;
  dismissed_at: NullableTimestamp;
  dismiss_reason: ColumnType<string | null, string | null | undefined, string | null>;
}

/** edge per-client rates (0050): messages and recipients per client per window, all nodes together; see edge/anvil.ts. */
export interface EdgeClientRatesTable {
  client: string;
  window_start: Timestamp;
  messages: number;
  recipients: number;
}

export interface DeskFormThrottleTable {
  client: string;
  window_start: Timestamp;
  hits: number;
}

/** desk incidents (0310): one per infected line, RFC 6561 lifecycle; see desk/lifecycle.ts. */
export type IncidentState = 'suspected' | 'notified' | 'restricted' | 'attested' | 'probation' | 'closed' | 'evidence-hold';
export type RestrictionLevel = 'port25-block' | 'smarthost' | 'walled-garden';
type NullableTimestamp = ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;

export interface IncidentsTable {
  id: Generated<string>;
  customer_id: string;
  state: IncidentState;
  held_from: IncidentState | null;
  opened_at: Timestamp;
  state_since: Timestamp;
  grace_until: NullableTimestamp;
  probation_until: NullableTimestamp;
  restriction_level: RestrictionLevel | null;
  self_releases_left: number;
  recurrences: Generated<number>;
  contact_snapshot: ColumnType<Record<string, unknown>, string, string>;
  portal_token_hash: string | null;
  portal_token_expires: NullableTimestamp;
  closed_at: NullableTimestamp;
}

export interface IncidentEventsTable {
  id: Generated<string>;
  incident_id: string;
  at: Timestamp;
  kind: string;
  actor: string;
  from_state: string | null;
  to_state: string | null;
  detail: ColumnType<Record<string, unknown>, string, string>;
}

export interface IncidentEvidenceTable {
  id: Generated<string>;
  incident_id: string;
  at: Timestamp;
  source: 'gateway' | 'alias' | 'form' | 'arf';
  ip: string;
  observed_at: Timestamp;
  summary: string;
  headers: string | null;
  malware: string[];
}

export interface DeskEnforcementTable {
  id: number;
  digest: string;
  addresses: string[];
  published_at: Timestamp;
}

/** desk customers and who held an address (0300); see desk/attribute.ts, desk/leases.ts. */
export type LineKind = 'radius-user' | 'mac' | 'circuit-id' | 'subscriber-id';

export interface CustomersTable {
  id: string;
  name: string;
  email: string | null;
  phone: string | null;
  language: Generated<string>;
  time_zone: Generated<string>;
  created_at: DefaultTimestamp;
  updated_at: DefaultTimestamp;
}

export interface CustomerLinesTable {
  customer_id: string;
  kind: LineKind;
  value: string;
}

/** tstzrange / int4range columns travel as their text form ('[a,b)'); query them with sql``. */
export interface StaticAssignmentsTable {
  id: Generated<number>;
  customer_id: string;
  network: string;
  valid: string;
  source: Generated<string>;
}

export interface LeasesTable {
  id: Generated<number>;
  ip: string;
  customer_id: string | null;
  line_kind: LineKind | null;
  line_value: string | null;
  valid: string;
  source: Generated<string>;
}

export interface CgnatBlocksTable {
  id: Generated<number>;
  public_ip: string;
  ports: string;
  valid: string;
  customer_id: string;
  source: Generated<string>;
}

export interface LeaseImportsTable {
  id: Generated<number>;
  format: string;
  file: string;
  started_at: DefaultTimestamp;
  finished_at: Date | null;
  rows_read: Generated<number>;
  rows_added: Generated<number>;
  rows_unchanged: Generated<number>;
  rows_closed: Generated<number>;
  error: string | null;
}

export interface Database {
  customers: CustomersTable;
  customer_lines: CustomerLinesTable;
  static_assignments: StaticAssignmentsTable;
  leases: LeasesTable;
  cgnat_blocks: CgnatBlocksTable;
  lease_imports: LeaseImportsTable;
  messages: MessagesTable;
  quarantine: QuarantineTable;
  jobs: JobsTable;
  audit: AuditTable;
  notice_names: NoticeNamesTable;
  notice_digest_items: NoticeDigestItemsTable;
  abuse_sources: AbuseSourcesTable;
  abuse_hours: AbuseHoursTable;
  abuse_optouts: AbuseOptoutsTable;
  abuse_contacts: AbuseContactsTable;
  abuse_reports: AbuseReportsTable;
  sender_notices: SenderNoticesTable;
  backscatter_events: BackscatterEventsTable;
  backscatter_complaints: BackscatterComplaintsTable;
  backscatter_keys: BackscatterKeysTable;
  web_users: WebUsersTable;
  web_sessions: WebSessionsTable;
  web_secrets: WebSecretsTable;
  web_login_throttle: WebLoginThrottleTable;
  desk_reports: DeskReportsTable;
  desk_form_throttle: DeskFormThrottleTable;
  edge_client_rates: EdgeClientRatesTable;
  incidents: IncidentsTable;
  incident_events: IncidentEventsTable;
  incident_evidence: IncidentEvidenceTable;
  desk_enforcement: DeskEnforcementTable;
}

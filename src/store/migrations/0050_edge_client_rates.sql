-- edge: per-client message and recipient counts per window, shared by every node (edge/anvil)
create table if not exists edge_client_rates (
  client text not null,
  window_start timestamptz not null,
  messages integer not null default 0,
  recipients integer not null default 0,
  primary key (client, window_start)
);
create index if not exists edge_client_rates_window on edge_client_rates (window_start);

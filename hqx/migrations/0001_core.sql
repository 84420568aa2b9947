-- Core schema: users, graphs, identities, directory, follow ledger, audit.
-- X account ids are bigint (snowflakes < 2^63); ingest refuses anything larger.

create table users (
    id               text primary key,
    created_at       timestamptz not null default now(),
    x_account_id     bigint,                -- claimed (from the archive) or proven
    x_username       text,
    x_proven         boolean not null default false,  -- signed in with X (ARCHITECTURE §5)
    x_proven_at      timestamptz,
    auto_reconnect   text[] not null default '{}',     -- networks opted in to reconnection
    locale           text
);
create index users_x_account_id on users (x_account_id);

-- One-way tags of erased users: a late message for them is dropped (nothing recreated).
create table erased_users (
    user_hash   text primary key,
    erased_at   timestamptz not null default now()
);

-- The newest accepted graph of a user (one row per user; a re-upload replaces it).
create table graphs (
    user_id          text primary key references users (id) on delete cascade,
    owner_x_id       bigint not null,
    owner_username   text,
    following_count  integer not null,
    follower_count   integer not null,
    version          integer not null,
    archive_sha256   text,
    ingested_at      timestamptz not null default now()
);

-- direction: 1 = the owner follows x_account_id (following), 2 = x_account_id follows the owner.
create table graph_edges (
    user_id       text not null references users (id) on delete cascade,
    direction     smallint not null check (direction in (1, 2)),
    x_account_id  bigint not null,
    primary key (user_id, direction, x_account_id)
);
create index graph_edges_reverse on graph_edges (x_account_id, direction);

-- Linked accounts with their encrypted tokens (one per user and network).
create table identities (
    user_id        text not null references users (id) on delete cascade,
    network        text not null check (network in ('bluesky', 'mastodon')),
    account        text not null,          -- DID, or user@instance
    handle         text,
    instance       text,                   -- PDS URL or Mastodon instance base URL
    auth_kind      text not null,          -- app_password | oauth
    token_cipher   bytea,                  -- encrypted session / token material (JSON)
    status         text not null default 'active' check (status in ('active', 'paused', 'revoked')),
    status_reason  text,
    linked_at      timestamptz not null default now(),
    updated_at     timestamptz not null default now(),
    primary key (user_id, network)
);
create index identities_account on identities (network, account);

-- The directory: X account id -> identity on a network. Only proven X ids enter it,
-- and an entry is never overwritten by another user's later claim.
create table directory (
    x_account_id  bigint not null,
    network       text not null,
    account       text not null,
    handle        text,
    user_id       text not null references users (id) on delete cascade,
    joined_at     timestamptz not null default now(),
    primary key (x_account_id, network)
);
create index directory_user on directory (user_id);

-- Conflicting claims, kept for audit (no token, no graph).
create table directory_quarantine (
    id            bigserial primary key,
    x_account_id  bigint not null,
    network       text not null,
    user_id       text not null references users (id) on delete cascade,
    reason        text not null,
    at            timestamptz not null default now()
);

-- One row per owner x network x target: planned -> done / requested / skipped / failed.
create table follow_ledger (
    user_id       text not null references users (id) on delete cascade,
    network       text not null,
    target_x_id   bigint not null,
    target        text not null,          -- DID or user@instance
    state         text not null check (state in ('planned', 'done', 'requested', 'skipped', 'failed')),
    reason        text,
    batch_id      text,
    planned_at    timestamptz not null default now(),
    updated_at    timestamptz not null default now(),
    primary key (user_id, network, target_x_id)
);
create index follow_ledger_pending on follow_ledger (user_id, network) where state = 'planned';

-- Mastodon app registration per instance (client secret encrypted).
create table mastodon_apps (
    instance       text primary key,       -- normalized base URL
    client_id      text not null,
    secret_cipher  bytea not null,
    software       text,
    created_at     timestamptz not null default now()
);

-- Audit of deletions: what kind, how many, when; never content, never a user id.
create table purge_audit (
    id          bigserial primary key,
    user_hash   text not null,
    trigger     text not null,
    kind        text not null,
    count       bigint not null,
    purged_at   timestamptz not null default now()
);

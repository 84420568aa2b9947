-- Matcher: follow-ledger bookkeeping, accounts already followed on a network, directory invariants.

-- Where a planned follow came from: 'forward' (the owner's own match, no opt-in needed) or
-- 'reverse' (automatic reconnection of a late joiner, only with users.auto_reconnect).
alter table follow_ledger add column origin text not null default 'forward'
    check (origin in ('forward', 'reverse'));

-- Planned rows not yet sent to an adapter (batch_id null): what the matcher dispatches next.
create index follow_ledger_unbatched on follow_ledger (network, user_id)
    where state = 'planned' and batch_id is null;
-- Pending follows aimed at one directory entry (erase / unlink cancels them).
create index follow_ledger_target on follow_ledger (target_x_id, network) where state = 'planned';

-- Accounts a user already follows on a network (reported by the adapters): never planned again,
-- recorded straight as done / already_following.
create table network_follows (
    user_id   text not null references users (id) on delete cascade,
    network   text not null,
    account   text not null,
    seen_at   timestamptz not null default now(),
    primary key (user_id, network, account)
);

create index directory_network_account on directory (network, account);

-- NOTE: invariant, whoever deletes a directory entry (matcher on unlink/erase, or the cascade from
-- users when the purger deletes a user): nobody keeps a *pending* follow of a person who left the
-- directory. Done follows stay (they are facts on the network).
create function directory_entry_gone() returns trigger language plpgsql as $$
begin
    delete from follow_ledger
     where target_x_id = old.x_account_id and network = old.network and state = 'planned';
    return old;
end $$;

create trigger directory_entry_gone after delete on directory
    for each row execute function directory_entry_gone();

-- Users whose match stats changed: the matcher publishes one `match.found` per user per sweep
-- (coalesces a burst of follow.done / late joiners into one notification).
create table match_stats_dirty (
    user_id  text primary key references users (id) on delete cascade,
    since    timestamptz not null default now()
);

-- When each network's automatic-reconnection consent was last set: an older consent.changed
-- redelivered late never undoes a newer choice. {"bluesky": "2026-...", ...}
alter table users add column auto_reconnect_at jsonb not null default '{}';

-- Owners with planned rows the matcher's sweep must look at (late joiners settling, held behind
-- a batch in flight), and from when (plus the settle). The sweep reads the owners due, not
-- every unsent row each second: at an exodus peak thousands of followers are held, and
-- re-reading them all every second cost a third of a core.
-- `touched_at` changes on every write: the sweep deletes or postpones a row only if nobody
-- touched it since it read it, so a late joiner planned meanwhile is never dropped.
create table dispatch_due (
    user_id    text not null references users (id) on delete cascade,
    network    text not null,
    due_at     timestamptz not null,
    touched_at timestamptz not null default clock_timestamp(),
    primary key (user_id, network)
);

create index dispatch_due_at on dispatch_due (due_at);

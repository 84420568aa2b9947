-- `hqx.db.user_hash` in SQL: is this person's tombstone there? A person's erase is written at
-- once; their directory entry, and with it every pending follow of them (0003 trigger), goes
-- only when the matcher reaches the request: seconds later, more when it lags or restarts.
-- The adapters' last check before a follow call asks this for the target.
create function hqx_user_erased(uid text) returns boolean language sql stable as $$
    select exists (
        select 1 from erased_users
         where user_hash = encode(sha256(convert_to('hqx-erased|' || uid, 'UTF8')), 'hex'))
$$;

-- Purger: nothing of an erased user can be recreated, and the audit is searchable by tag.

-- The one-way tag of hqx.db.user_hash, computed in SQL (keep both in step: same prefix).
create or replace function hqx_user_hash(user_id text) returns text
language sql immutable strict parallel safe as $$
    select encode(sha256(convert_to('hqx-erased|' || user_id, 'UTF8')), 'hex')
$$;

-- A late message (a handler that checked hqx.db.is_erased just before the tombstone) must not
-- bring an erased user back: every per-user table references users (on delete cascade), so
-- refusing the users row refuses everything else too.
create or replace function hqx_refuse_erased_user() returns trigger
language plpgsql as $$
begin
    if exists (select 1 from erased_users where user_hash = hqx_user_hash(new.id)) then
        raise exception 'user was erased' using errcode = 'P0001', hint = 'user_erased';
    end if;
    return new;
end
$$;

drop trigger if exists users_refuse_erased on users;
create trigger users_refuse_erased
    before insert or update of id on users
    for each row execute function hqx_refuse_erased_user();

create index if not exists purge_audit_user_hash on purge_audit (user_hash, purged_at);

-- The adapters' last check before a follow call, written once: is the person behind this
-- target ($1: X account id) on this network ($2) erased (0010), though the matcher has not yet
-- removed them from the directory?
create function hqx_target_erased(bigint, text) returns boolean language sql stable as $$
    select exists (select 1 from directory d
                    where d.x_account_id = $1 and d.network = $2 and hqx_user_erased(d.user_id))
$$;

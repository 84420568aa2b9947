-- Mastodon adapter: app registrations keep the redirect URI they were made for, and each
-- account's follow state (a 422 follow cap stops its follows; the rest goes to the CSV).
alter table mastodon_apps add column if not exists redirect_uri text;

create table if not exists mastodon_accounts (
    user_id           text primary key references users (id) on delete cascade,
    follow_capped_at  timestamptz,            -- set on a 422 (FollowLimitValidator)
    cap_detail        text,
    updated_at        timestamptz not null default now()
);

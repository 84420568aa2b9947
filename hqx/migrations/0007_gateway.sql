-- Gateway: resumable uploads into the archive object store (state of each upload).
create table uploads (
    id            text primary key,
    user_id       text not null references users (id) on delete cascade,
    object_name   text not null unique,      -- <user_id>/<upload_id> in the archives bucket
    nuid          text not null,             -- chunk subject token in the object store stream
    size          bigint not null,           -- declared total length (Upload-Length)
    "offset"      bigint not null default 0, -- bytes stored so far
    chunks        integer not null default 0,
    slimmed       boolean not null default false,
    state         text not null default 'receiving'
                  check (state in ('receiving', 'received', 'unpacked', 'rejected', 'failed')),
    reason        text,
    sha256        text,
    created_at    timestamptz not null default now(),
    updated_at    timestamptz not null default now()
);
create index uploads_user on uploads (user_id, created_at desc);

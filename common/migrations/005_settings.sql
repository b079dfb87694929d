-- imgcache schema, version 5: settings the views read, in one place.
--
-- public_base_url is the base URL the store is served under (for example
-- https://cdn.example.com/avatars, or file:///var/lib/imgcache/images). The
-- views build every image URL from it and a storage key at read time, with
-- imgcache_public_url(), so changing it is one UPDATE (or `imgcache-producer
-- migrate` with a new IMGCACHE_PUBLIC_URL) and no re-download.
-- The table holds exactly one row (only_row is always true).
CREATE TABLE settings (
    only_row        boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    public_base_url text NOT NULL DEFAULT ''
);
INSERT INTO settings DEFAULT VALUES;

-- The URL a storage key is served under: the base without its trailing
-- slashes, '/', the key. NULL for a NULL key (nothing cached).
CREATE FUNCTION imgcache_public_url(storage_key text) RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT CASE WHEN storage_key IS NULL THEN NULL
                ELSE rtrim(s.public_base_url, '/') || '/' || storage_key
           END
    FROM settings s
$$;

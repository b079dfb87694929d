-- imgcache schema, version 8: avatar renditions (imgcache-renderer).
--
-- A rendition is a small square WebP made from a blob (IMGCACHE_RENDITIONS,
-- default 64,128,256 px), stored content-addressed like the blob
-- (<aa>/<sha256>.webp) and recorded here, one row per blob and preset. Two
-- blobs whose renditions come out identical share the file; gc removes a
-- file once no row names it. The rows go with their blob (ON DELETE
-- CASCADE), so gc's blob step takes them along.
CREATE TABLE image_renditions (
    source_sha256 text NOT NULL REFERENCES image_blobs (sha256) ON DELETE CASCADE,
    preset        int NOT NULL CHECK (preset BETWEEN 1 AND 4096), -- the size asked for, px
    sha256        text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    storage_key   text NOT NULL,
    content_type  text NOT NULL,
    width         int NOT NULL CHECK (width > 0),   -- smaller than preset for a small source:
    height        int NOT NULL CHECK (height > 0),  -- never upscaled
    byte_size     bigint NOT NULL CHECK (byte_size >= 0),
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source_sha256, preset)
);
-- gc's look-up of the files a row still names
CREATE INDEX image_renditions_storage_key_idx ON image_renditions (storage_key);

-- Blobs the renderer could not render. attempts counts renders started
-- (written before decoding, so a crash or a time-out counts too);
-- permanent: given up (a bad or too large image, or attempts used up).
-- The row of a blob rendered at last is deleted.
CREATE TABLE render_failures (
    source_sha256   text PRIMARY KEY REFERENCES image_blobs (sha256) ON DELETE CASCADE,
    attempts        int NOT NULL DEFAULT 1 CHECK (attempts >= 0),
    error_class     text NOT NULL,        -- started, bad_image, too_large, crashed_or_timed_out
    last_error      text,
    permanent       boolean NOT NULL DEFAULT false,
    first_failed_at timestamptz NOT NULL DEFAULT now(),
    last_failed_at  timestamptz NOT NULL DEFAULT now()
);

-- The preset chat_avatars.thumb_url shows (px): change it with one UPDATE.
ALTER TABLE settings ADD COLUMN thumb_preset int NOT NULL DEFAULT 128 CHECK (thumb_preset > 0);

-- Every rendition of every cached source URL, its URL built at read time.
CREATE VIEW avatar_renditions AS
SELECT ci.source_url,
       r.preset,
       imgcache_public_url(r.storage_key) AS url,
       r.width,
       r.height,
       r.content_type,
       r.byte_size,
       r.source_sha256,
       r.storage_key
FROM cached_images ci
JOIN image_renditions r ON r.source_sha256 = ci.sha256;

-- chat_avatars as schema 7 has it (image URLs at read time), plus
-- thumb_url: the settings.thumb_preset rendition of the cached image, NULL
-- until the renderer made it (image_url stays the original).
CREATE OR REPLACE VIEW chat_avatars AS
SELECT c.chat_id,
       nm.name AS title,
       coalesce(imgcache_public_url(b.storage_key), c.contact_image_url) AS image_url,
       CASE
           WHEN ci.source_url IS NOT NULL THEN 'cached'
           WHEN c.contact_image_url IS NOT NULL THEN 'contact'
           ELSE 'initials'
       END AS image_source,
       imgcache_initials(nm.name) AS initials,
       src.source_url,
       imgcache_public_url(r.storage_key) AS thumb_url
FROM chats c
CROSS JOIN LATERAL (
    SELECT imgcache_chat_name(c.chat_id, c.title, c.chat_type) AS name
) nm
CROSS JOIN LATERAL (
    SELECT CASE
               WHEN c.chat_type = 'single' THEN
                   coalesce((SELECT p.img_source_url
                             FROM chat_participants p
                             WHERE p.chat_id = c.chat_id AND NOT p.is_self
                               AND p.img_source_url IS NOT NULL
                             ORDER BY p.participant_id
                             LIMIT 1),
                            c.img_source_url)
               ELSE c.img_source_url
           END AS source_url
) src
LEFT JOIN cached_images ci ON ci.source_url = src.source_url
LEFT JOIN image_blobs b ON b.sha256 = ci.sha256
LEFT JOIN image_renditions r ON r.source_sha256 = ci.sha256
                            AND r.preset = (SELECT s.thumb_preset FROM settings s);

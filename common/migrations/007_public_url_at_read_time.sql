-- imgcache schema, version 7: image URLs are built at read time.
--
-- cached_images.public_url froze the base URL at download time: changing
-- IMGCACHE_PUBLIC_URL left old rows on the old base, and one blob could
-- have two URLs. The views now build image_url from settings.public_base_url
-- and image_blobs.storage_key (imgcache_public_url(), schema 5), so moving
-- the store behind a CDN is one UPDATE of settings (which `imgcache-producer
-- migrate` does from IMGCACHE_PUBLIC_URL), with no re-download.

-- Keep the URLs existing rows show: when no base is set yet, take the one
-- most rows were cached under (public_url minus '/' || storage_key).
UPDATE settings s
SET public_base_url = seed.base
FROM (
    SELECT mode() WITHIN GROUP (ORDER BY left(ci.public_url, length(ci.public_url) - length(b.storage_key) - 1)) AS base
    FROM cached_images ci
    JOIN image_blobs b ON b.sha256 = ci.sha256
    WHERE right(ci.public_url, length(b.storage_key) + 1) = '/' || b.storage_key
) seed
WHERE s.public_base_url = '' AND seed.base IS NOT NULL;

-- Same columns, same order as schema 2 (chat_avatars) and 1
-- (participant_avatars); a cached source now means a cached_images row.
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
       src.source_url
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
LEFT JOIN image_blobs b ON b.sha256 = ci.sha256;

CREATE OR REPLACE VIEW participant_avatars AS
SELECT p.chat_id,
       p.participant_id,
       p.full_name,
       imgcache_public_url(b.storage_key) AS image_url,
       imgcache_initials(p.full_name) AS initials
FROM chat_participants p
LEFT JOIN cached_images ci ON ci.source_url = p.img_source_url
LEFT JOIN image_blobs b ON b.sha256 = ci.sha256;

ALTER TABLE cached_images DROP COLUMN public_url;

-- bench/stats-1m.sql: 1,000,000 cached images for timing `imgcache-producer stats`
-- (README, "`stats` on a million images"). Run on an empty, migrated
-- scratch database:  psql "$DATABASE_URL" -f bench/stats-1m.sql
-- 900,000 blobs (100,000 URLs share content), 1,050,000 chats (500,000
-- singles whose other participant has the image, 500,000 groups with their
-- own, 50,000 whose image is not cached), 1,500,000 participants, 50,000
-- failures.
\timing on
INSERT INTO image_blobs (sha256, storage_key, content_type, byte_size, width, height)
SELECT encode(sha256(convert_to('blob-' || i, 'UTF8')), 'hex'), 'k/' || i, 'image/jpeg',
       2000 + (i::bigint * 7919) % 60000, 128, 128
FROM generate_series(1, 900000) i;
INSERT INTO cached_images (source_url, sha256, content_type, byte_size, cached_at, refreshed_at)
SELECT 'https://img.test/u/' || i, encode(sha256(convert_to('blob-' || ((i - 1) % 900000 + 1), 'UTF8')), 'hex'),
       'image/jpeg', 2000 + (((i - 1) % 900000 + 1)::bigint * 7919) % 60000,
       now() - (i % 1000) * interval '1 hour', now() - (i % 1000) * interval '1 minute'
FROM generate_series(1, 1000000) i;
INSERT INTO chats (chat_id, account_id, title, chat_type, network, img_source_url, contact_image_url)
SELECT 'c' || i, 'acct', 'Chat ' || i, CASE WHEN i <= 500000 THEN 'single' ELSE 'group' END,
       (ARRAY['WhatsApp', 'Signal', 'Telegram', 'Instagram', 'SMS', NULL])[i % 6 + 1],
       CASE WHEN i > 500000 THEN 'https://img.test/u/' || i END,
       CASE WHEN i % 10 = 0 THEN 'https://contacts.test/' || i END
FROM generate_series(1, 1050000) i;
INSERT INTO chat_participants (chat_id, participant_id, full_name, img_source_url, is_self)
SELECT 'c' || i, 'me', 'Me', NULL, true FROM generate_series(1, 500000) i;
INSERT INTO chat_participants (chat_id, participant_id, full_name, img_source_url, is_self)
SELECT 'c' || i, 'p' || i, 'Person ' || i, 'https://img.test/u/' || i, false FROM generate_series(1, 500000) i;
INSERT INTO chat_participants (chat_id, participant_id, full_name, img_source_url, is_self)
SELECT 'c' || i, 'g' || i, 'Member ' || i, 'https://img.test/u/' || i, false FROM generate_series(500001, 1000000) i;
INSERT INTO image_failures (source_url, error_class, permanent, next_retry_at)
SELECT 'https://img.test/u/' || i, (ARRAY['http_404', 'not_image', 'timeout', 'http_503'])[i % 4 + 1],
       i % 4 < 2, CASE WHEN i % 4 >= 2 THEN now() + interval '1 hour' END
FROM generate_series(1000001, 1050000) i;
VACUUM ANALYZE;

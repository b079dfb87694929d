-- imgcache schema, version 2: a chat without a title still gets a name.
--
-- Beeper sends "title": null (or "") for many chats. chat_avatars.title, and
-- so the initials, now fall back to:
--  * 'single': the other (non-self) participant's full_name; when several,
--    the first by participant_id among those that have one;
--  * 'group': the non-self participants' names, ordered by name (then id),
--    joined with ', ' (ordered by the ICU root collation, whatever the
--    database's locale): at most 3 names, then ' +N' for the rest ('Ann, Bo,
--    Cy +2'), as chat lists show them.
-- A title that is blank (only whitespace) counts as none. Only the view
-- changes; chats.title keeps what Beeper sent.
--
-- CREATE OR REPLACE keeps the columns, their order and types, so anything
-- reading the view goes on working.

CREATE FUNCTION imgcache_chat_name(p_chat_id text, p_title text, p_chat_type text) RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT CASE
               WHEN nullif(btrim(p_title), '') IS NOT NULL THEN p_title
               WHEN p_chat_type = 'single' THEN
                   (SELECT p.full_name
                    FROM chat_participants p
                    WHERE p.chat_id = p_chat_id AND NOT p.is_self
                      AND nullif(btrim(p.full_name), '') IS NOT NULL
                    ORDER BY p.participant_id
                    LIMIT 1)
               ELSE
                   (SELECT string_agg(n.full_name, ', ' ORDER BY n.rn)
                           || CASE WHEN max(n.total) > 3 THEN ' +' || (max(n.total) - 3) ELSE '' END
                    FROM (SELECT p.full_name,
                                 row_number() OVER (ORDER BY p.full_name COLLATE "und-x-icu", p.participant_id) AS rn,
                                 count(*) OVER () AS total
                          FROM chat_participants p
                          WHERE p.chat_id = p_chat_id AND NOT p.is_self
                            AND nullif(btrim(p.full_name), '') IS NOT NULL) n
                    WHERE n.rn <= 3)
           END
$$;

CREATE OR REPLACE VIEW chat_avatars AS
SELECT c.chat_id,
       nm.name AS title,
       coalesce(ci.public_url, c.contact_image_url) AS image_url,
       CASE
           WHEN ci.public_url IS NOT NULL THEN 'cached'
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
LEFT JOIN cached_images ci ON ci.source_url = src.source_url;

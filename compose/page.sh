#!/bin/sh
# Writes the demo page: every chat of chat_avatars with its picture, or its
# initials in a coloured circle when it has none, and where the picture comes
# from (cached, contact, initials). A static HTML file, no scripts; nginx
# serves it at / (compose/nginx-server.conf.template).
#
#   compose/page.sh OUT.html        (reads DATABASE_URL)
#
# Titles, initials and URLs are HTML-escaped in SQL (imgcache_html below).
# The picture is chat_avatars.thumb_url when the view has that column (the
# renditions' default size), else image_url: to_jsonb(row) ->> 'thumb_url'
# is NULL when the column does not exist, so the query works with both.
# A picture that does not load (a contact image on an unreachable host)
# leaves the initials behind it visible.
set -eu

[ $# = 1 ] || { echo "usage: compose/page.sh OUT.html  (reads DATABASE_URL)" >&2; exit 2; }
OUT=$1
: "${DATABASE_URL:?compose/page.sh: DATABASE_URL is not set}"

psql -XAtq -v ON_ERROR_STOP=1 "$DATABASE_URL" > "$OUT.tmp" <<'SQL'
CREATE FUNCTION pg_temp.imgcache_html(s text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT replace(replace(replace(replace(replace(coalesce(s, ''),
           '&', '&amp;'), '<', '&lt;'), '>', '&gt;'), '"', '&quot;'), '''', '&#39;')
$$;
WITH a AS (
    SELECT av.chat_id, av.title, av.initials, av.image_source,
           -- the one place that chooses the picture: the rendition when there is one
           coalesce(to_jsonb(av) ->> 'thumb_url', av.image_url) AS picture
    FROM chat_avatars av
)
SELECT concat_ws(E'\n',
'<!doctype html>',
'<html lang="en"><head><meta charset="utf-8">',
'<meta name="viewport" content="width=device-width, initial-scale=1">',
'<title>imgcache: chat avatars</title>',
'<style>',
'body { font: 15px/1.4 system-ui, sans-serif; margin: 2em; background: #f4f5f7; color: #1d2129; }',
'h1 { font-size: 20px; } p.summary { color: #555; }',
'ul { list-style: none; padding: 0; display: grid; grid-template-columns: repeat(auto-fill, minmax(260px, 1fr)); gap: 10px; }',
'li { display: flex; align-items: center; gap: 12px; background: #fff; border-radius: 10px; padding: 10px 12px; box-shadow: 0 1px 2px #0002; }',
'.avatar { position: relative; flex: none; width: 56px; height: 56px; border-radius: 50%; overflow: hidden;',
'          display: flex; align-items: center; justify-content: center; color: #fff; font-weight: 600; font-size: 20px; }',
'.avatar img { position: absolute; inset: 0; width: 100%; height: 100%; object-fit: cover; }',
'.title { font-weight: 600; overflow-wrap: anywhere; }',
'.source { font-size: 12px; color: #666; }',
'.source.cached { color: #18794e; } .source.contact { color: #0b68cb; }',
'</style></head><body>',
'<h1>Chat avatars</h1>',
'<p class="summary">' || count(*) || ' chats: ' || count(*) FILTER (WHERE image_source = 'cached') || ' cached, '
    || count(*) FILTER (WHERE image_source = 'contact') || ' contact, '
    || count(*) FILTER (WHERE image_source = 'initials') || ' initials.</p>',
'<ul>',
string_agg(
    '<li class="chat" data-source="' || image_source || '">'
    || '<span class="avatar" style="background: hsl(' || abs(hashtext(chat_id)) % 360 || ', 45%, 45%)">'
    || '<span class="initials">' || pg_temp.imgcache_html(initials) || '</span>'
    || CASE WHEN picture IS NOT NULL
            THEN '<img src="' || pg_temp.imgcache_html(picture) || '" alt="" width="56" height="56">'
            ELSE '' END
    || '</span><span><span class="title">' || pg_temp.imgcache_html(coalesce(title, chat_id)) || '</span><br>'
    || '<span class="source ' || image_source || '">' || image_source || '</span></span></li>',
    E'\n' ORDER BY lower(coalesce(title, chat_id)), chat_id),
'</ul>',
'</body></html>')
FROM a;
SQL
mv "$OUT.tmp" "$OUT"

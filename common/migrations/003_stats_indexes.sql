-- imgcache schema, version 3: indexes for `imgcache-producer stats`.
--
-- stats shows the oldest refreshed_at (the image longest without a
-- refresh) and the failures by class. Without these, each would read the
-- whole table: min(refreshed_at) now reads one index entry, and the
-- failure counts are an index-only scan (the visibility map permitting).
CREATE INDEX cached_images_refreshed_at_idx ON cached_images (refreshed_at);
CREATE INDEX image_failures_class_idx ON image_failures (error_class, permanent);

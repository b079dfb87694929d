#ifndef IMGCACHE_DB_SETTINGS_H
#define IMGCACHE_DB_SETTINGS_H
/* The settings table (schema 5): values the views read at read time. Part
 * of the db module (db_private.h).
 *
 * Ownership: the caller owns every buffer; nothing is allocated. */
#include <stddef.h>

#include "db.h"

/* Sets settings.public_base_url, the base of every image_url the views
 * build, to base; with only_if_unset, only when it is still '' (so that a
 * default never overwrites an operator's choice). *changed gets 1 when the
 * row was written; current (currentlen bytes) gets the value in effect
 * afterwards. */
int db_settings_set_public_base(struct db *db, const char *base, int only_if_unset, int *changed,
                                char *current, size_t currentlen, char *err, size_t errlen) MUST_CHECK;

#endif

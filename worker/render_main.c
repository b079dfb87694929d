/* imgcache-renderer: parse configuration, start libvips, build the
 * renderer, run its loop, tear down in reverse. */
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "log.h"
#include "stop_signal.h"
#include "renderer.h"
#include "rendition.h"

static volatile sig_atomic_t stop_requested;

static const char usage[] =
    "Usage: imgcache-renderer [--group NAME] [--renditions 64,128,256] [options]\n"
    "\n"
    "Consumes image-stored events (IMGCACHE_STORED_TOPIC, consumer group\n"
    "IMGCACHE_RENDER_GROUP) and makes each new blob's avatar renditions with\n"
    "libvips: square WebP, centre crop, never upscaled, EXIF orientation applied,\n"
    "all metadata stripped, first frame of an animation. Each is stored as\n"
    "<aa>/<sha256>.webp under IMGCACHE_STORAGE_DIR and recorded in\n"
    "image_renditions; presets already recorded are skipped, so a new group with\n"
    "a new preset (a replay) renders only what is missing. A bad or too large\n"
    "image is given up (a render_failures row); a render that crashes or passes\n"
    "--render-timeout ends the process (restart it): after --render-attempts\n"
    "such renders the image is given up. PostgreSQL or store failures are\n"
    "retried, the offset not committed. SIGTERM or SIGINT: finish the image in\n"
    "hand, commit, exit 0; a second one stops at once.\n"
    "\n"
    "Exit status: 0 clean stop, 1 runtime error, 2 bad configuration.";

int main(int argc, char **argv)
{
    struct config cfg;
    struct renderer *r = NULL;
    char err[512];
    int rc, status = 1, vips_started = 0;

    rc = config_load(&cfg, CONFIG_RENDERER, usage, argc, argv, err, sizeof err);
    if (rc != 0) {
        if (rc < 0)
            fprintf(stderr, "imgcache-renderer: %s\n", err);
        config_free(&cfg);
        return rc > 0 ? 0 : 2;
    }
    if (cfg.nargs > 0) {
        fprintf(stderr, "imgcache-renderer: unexpected argument '%s' (see --help)\n", cfg.args[0]);
        config_free(&cfg);
        return 2;
    }
    log_init("imgcache-renderer", log_level_parse(cfg.log_level));

    stop_signal_install(&stop_requested);

    /* 1. libvips, before any thread exists */
    if (rendition_init(argv[0], err, sizeof err) != 0) {
        log_error("event=start_failed reason=\"%s\"", err);
        goto out;
    }
    vips_started = 1;
    /* 2. the renderer: database, store, consumer group */
    rc = renderer_new(&cfg, &r, err, sizeof err);
    if (rc != 0) {
        log_error("event=start_failed reason=\"%s\"", err);
        status = rc == RENDERER_ERR_CONFIG ? 2 : 1;
        goto out;
    }
    /* 3. the loop */
    if (renderer_run(r, &stop_requested, err, sizeof err) != 0) {
        log_error("event=stopped reason=\"%s\"", err);
        goto out;
    }
    status = 0;
out:
    renderer_free(r);
    if (vips_started)
        rendition_shutdown();
    config_free(&cfg);
    return status;
}

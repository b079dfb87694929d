# imgcache build. `make` builds the programs; `make test` installs what is
# missing, builds, and runs every test against real servers.
#   make SANITIZE=address,undefined   build (and test) with sanitizers
#   make test TEST_PREFIX="valgrind --leak-check=full --error-exitcode=1"
CC        ?= cc
PKGS      := rdkafka libcurl hiredis jansson libpq libcrypto libmicrohttpd
WARN      := -Wall -Wextra -Werror -Wstrict-prototypes -Wmissing-prototypes \
             -Wshadow -Wformat=2 -Wvla
CFLAGS    ?= -g -O2
CFLAGS    += -std=c11 -D_GNU_SOURCE -pthread $(WARN) -Icommon -Iworker -Ibuild \
             $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS    += $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lm -pthread
ifneq ($(SANITIZE),)
CFLAGS    += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
LDFLAGS   += -fsanitize=$(SANITIZE)
endif

# common/rendition.c needs libvips: kept out of libcommon.a, so only the
# programs that render (and their tests) link libvips, never the worker or
# the producer. Link $(RENDITION_OBJ) with $(VIPS_LIBS).
VIPS_CFLAGS   := $(shell pkg-config --cflags vips 2>/dev/null)
VIPS_LIBS     := $(shell pkg-config --libs vips 2>/dev/null)
RENDITION_OBJ := build/common/rendition.o
COMMON_SRC := $(filter-out common/rendition.c,$(sort $(wildcard common/*.c)))
COMMON_OBJ := $(COMMON_SRC:%.c=build/%.o) build/migrations.o
PRODUCER_OBJ := $(patsubst %.c,build/%.o,$(sort $(wildcard producer/*.c)))
# the worker's modules, but main.c, form a library the unit tests link too
# (not the renderer's: worker/render*.c is imgcache-renderer, which links libvips)
WORKER_LIB_OBJ := $(patsubst %.c,build/%.o,$(filter-out worker/main.c worker/render%,$(sort $(wildcard worker/*.c))))
RENDERER_OBJ := $(patsubst %.c,build/%.o,$(sort $(wildcard worker/render*.c)))
UNIT_SRC   := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BIN   := $(UNIT_SRC:tests/unit/%.c=build/tests/%)
MIGRATIONS := $(sort $(wildcard common/migrations/*.sql))

PROGRAMS := bin/imgcache-producer bin/imgcache-worker bin/imgcache-devbroker bin/imgcache-renderer
TOOLS    := bin/imgcache-mediaserver bin/imgcache-metricsd

.PHONY: all deps test unit demo stop bench fuzz clean FORCE
all: $(PROGRAMS) $(TOOLS)

# Rebuild everything when the flags change (e.g. SANITIZE on/off).
build/.flags: FORCE
	@mkdir -p build
	@echo '$(CC) $(CFLAGS) $(LDFLAGS)' | cmp -s - $@ || echo '$(CC) $(CFLAGS) $(LDFLAGS)' > $@

# build/version.h: IMGCACHE_VERSION and IMGCACHE_COMMIT for the build-info
# metric, from git ("unknown" outside a git checkout). Rewritten only when
# they change, so a commit rebuilds only the files that include it.
IMGCACHE_VERSION := $(or $(shell git describe --tags --always --dirty 2>/dev/null),unknown)
IMGCACHE_COMMIT  := $(or $(shell git rev-parse HEAD 2>/dev/null),unknown)
build/version.h: FORCE
	@mkdir -p build
	@printf '#define IMGCACHE_VERSION "%s"\n#define IMGCACHE_COMMIT "%s"\n' '$(IMGCACHE_VERSION)' '$(IMGCACHE_COMMIT)' > $@.tmp
	@if cmp -s $@.tmp $@; then rm -f $@.tmp; else mv $@.tmp $@; fi

build/%.o: %.c build/.flags | build/version.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

# The SQL migrations are compiled into the programs, so a binary never runs
# against files from another version.
# build/.migrations names the files, so a removed one (a branch switch) rebuilds too.
build/.migrations: FORCE
	@mkdir -p build
	@echo '$(MIGRATIONS)' | cmp -s - $@ || echo '$(MIGRATIONS)' > $@
build/migrations.c: $(MIGRATIONS) build/.migrations common/embed-sql.sh
	@mkdir -p build
	sh common/embed-sql.sh $(MIGRATIONS) > $@.tmp && mv $@.tmp $@
build/migrations.o: build/migrations.c build/.flags
	$(CC) $(CFLAGS) -c $< -o $@

build/common/rendition.o: common/rendition.c build/.flags | build/version.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(VIPS_CFLAGS) -MMD -MP -c $< -o $@

build/libcommon.a: $(COMMON_OBJ)
	rm -f $@ && ar rcs $@ $^
build/libworker.a: $(WORKER_LIB_OBJ)
	rm -f $@ && ar rcs $@ $^

bin/imgcache-producer: $(PRODUCER_OBJ) build/libcommon.a
	@mkdir -p bin
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
bin/imgcache-worker: build/worker/main.o build/libworker.a build/libcommon.a
	@mkdir -p bin
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
# the renderer: its own program, the only one (with its tests) linking libvips
bin/imgcache-renderer: $(RENDERER_OBJ) $(RENDITION_OBJ) build/libcommon.a
	@mkdir -p bin
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(VIPS_LIBS)
bin/imgcache-devbroker: build/compose/devbroker.o build/libcommon.a
	@mkdir -p bin
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
bin/imgcache-mediaserver: build/tests/mediaserver/mediaserver.o build/libcommon.a
	@mkdir -p bin
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(shell pkg-config --libs libmicrohttpd zlib 2>/dev/null)

# A stand-in worker for the metrics endpoint's tests (tests/metricsd/).
bin/imgcache-metricsd: build/tests/metricsd/metricsd.o build/libcommon.a
	@mkdir -p bin
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

build/tests/test_%: build/tests/unit/test_%.o build/libworker.a build/libcommon.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(shell pkg-config --libs cmocka 2>/dev/null)

# test_rendition decodes what it makes with libvips
build/tests/unit/test_rendition.o: tests/unit/test_rendition.c build/.flags | build/version.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(VIPS_CFLAGS) -MMD -MP -c $< -o $@
build/tests/test_rendition: build/tests/unit/test_rendition.o $(RENDITION_OBJ) build/libcommon.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(VIPS_LIBS) $(shell pkg-config --libs cmocka 2>/dev/null)

# bench/run.sh's "renditions" section: rendition_make() against vipsthumbnail
build/bench/rendition-bench: bench/rendition_bench.c $(RENDITION_OBJ) build/libcommon.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(VIPS_CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(VIPS_LIBS)

unit: $(UNIT_BIN)

# Debian packages, then the Apache Kafka broker's jars (once; not with
# IMGCACHE_BROKER=dev, which needs no Java).
deps:
	@sh compose/deps.sh
	@if [ "$${IMGCACHE_BROKER:-kafka}" != dev ]; then sh compose/kafka.sh fetch; fi

test: deps
	@$(MAKE) --no-print-directory all unit
	@TEST_PREFIX='$(TEST_PREFIX)' sh tests/run.sh

demo: deps
	@$(MAKE) --no-print-directory all
	@sh compose/demo.sh

stop:
	@sh compose/stack.sh stop $${IMGCACHE_DEMO_DIR:-var}

bench: deps
	@$(MAKE) --no-print-directory all build/bench/rendition-bench
	@bash bench/run.sh $(BENCH_ARGS)

clean:
	rm -rf build bin

-include $(shell find build -name '*.d' 2>/dev/null)

# ---- fuzzing: `make fuzz` ------------------------------------------------------
# Builds every tests/fuzz/fuzz_<name>.c with clang and libFuzzer into
# build/fuzz/ (each linked with common/<name>.c, or FUZZ_SRC_<name>) and runs
# each for FUZZ_SECONDS (tests/fuzz/run.sh: corpus in build/fuzz/corpus/<name>,
# seeds from tests/fuzz/seeds/<name>, crash inputs in build/fuzz/artifacts/).
#   make fuzz FUZZ_SECONDS=300 FUZZ_JOBS=2 FUZZ_TARGETS="sniff event"
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_JOBS    ?= 1
FUZZ_CFLAGS  ?= -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
FUZZ_LIBS    ?= $(shell pkg-config --libs jansson libcurl libcrypto 2>/dev/null)
# beeper keys data: URLs by their SHA-256 (resolve.c, hash.c)
FUZZ_SRC_beeper  := common/beeper.c common/resolve.c common/hash.c
FUZZ_SRC_resolve := common/resolve.c common/hash.c
# kafka_stats publishes into a metrics gauge
FUZZ_SRC_kafka_stats := common/kafka_stats.c common/metrics.c
# rendition decodes with libvips (not instrumented: the fuzzer checks our
# gates and what reaches libvips' decoders) after sniff's header check
FUZZ_SRC_rendition := common/rendition.c common/sniff.c
build/fuzz/fuzz_rendition: FUZZ_LIBS += $(VIPS_CFLAGS) $(VIPS_LIBS)
FUZZ_TARGETS ?= $(patsubst tests/fuzz/fuzz_%.c,%,$(sort $(wildcard tests/fuzz/fuzz_*.c)))
FUZZ_ALL     := $(patsubst tests/fuzz/fuzz_%.c,%,$(sort $(wildcard tests/fuzz/fuzz_*.c)))

build/fuzz/fuzz_%: tests/fuzz/fuzz_%.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -std=c11 -D_GNU_SOURCE -Icommon -o $@ $< $(or $(FUZZ_SRC_$*),common/$*.c) common/errmsg.c $(FUZZ_LIBS)
$(foreach t,$(FUZZ_ALL),$(eval build/fuzz/fuzz_$(t): $(or $(FUZZ_SRC_$(t)),common/$(t).c) common/errmsg.c $(wildcard common/*.h)))

fuzz:
	@FUZZ_CC='$(FUZZ_CC)' FUZZ_CFLAGS='$(FUZZ_CFLAGS)' MAKE='$(MAKE)' \
		bash tests/fuzz/run.sh --seconds '$(FUZZ_SECONDS)' --jobs '$(FUZZ_JOBS)' $(FUZZ_TARGETS)

# tests/check.mk -- "make check": the proof under stress. Included by the
# top Makefile; every command runs from the top of the tree.
#
#   make check            all four parts below, one after the other; about 4
#                         minutes on 2 cores. Each part prints one line with
#                         its time; the last line is "check: all passed", or
#                         "check: FAILED: <parts>" (and the exit status is 1)
#   make check-asan       the test suite and the lab under AddressSanitizer and
#                         UndefinedBehaviorSanitizer, built with clang in a copy
#                         of the tree (the normal build is not touched)
#   make check-valgrind   every step's server and client under valgrind memcheck,
#                         through a real session (tests/memcheck.c)
#   make check-fuzz       each libFuzzer target for FUZZ_SECONDS (default 30),
#                         two at a time, after replaying its committed corpus
#   make check-lint       cppcheck and clang-tidy over common/, step*/, tests/
#   make fuzz FUZZ_SECONDS=600   a longer fuzzing run; keeps what it found
#   make check-clean      removes what these targets built in tests/
#
# Tools (Debian): clang, libclang-rt-14-dev (libFuzzer and the sanitizers'
# runtime), valgrind, cppcheck, clang-tidy.
#
# A crash found by a fuzzer becomes a regression test:
#   1. the fuzzer saves the input as crash-<sha1> (or leak-, timeout-) in
#      the work directory it names, and the run fails;
#   2. reproduce it: tests/fuzz_server4 FILE (FUZZ_SERVER_LOG=1 shows the
#      server's own log), or tests/fuzz_line FILE;
#   3. copy it into tests/corpus/server/ (or tests/corpus/line/) under a
#      name that says what it is, and commit it with the fix. Every fuzz run
#      starts by running the whole committed corpus, so make check replays
#      that input from then on, before fuzzing anything new.
# What a long run (make fuzz) found that is new but not a crash can be
# merged into the committed corpus the same way it names:
#   tests/fuzz_server4 -merge=1 tests/corpus/server <its work dir>/new

FUZZ_SECONDS ?= 30
CHECK_TMP ?= $(or $(TMPDIR),/tmp)
CHECK_CLANG ?= clang

CHECK_SQLITE_CFLAGS := $(shell pkg-config --cflags sqlite3)
CHECK_SQLITE_LIBS := $(shell pkg-config --libs sqlite3)
CHECK_STD = -std=c11 -D_POSIX_C_SOURCE=200809L
CHECK_WARN = -Wall -Wextra -Wpedantic -Werror

# ---------------------------------------------------------------------------
# The whole check

CHECK_PARTS = lint asan valgrind fuzz

check:
	@failed=""; t=$$(date +%s); \
	for part in $(CHECK_PARTS); do \
	  t0=$$(date +%s); \
	  if $(MAKE) --no-print-directory check-$$part; then r=passed; else r=FAILED; failed="$$failed $$part"; fi; \
	  echo "check-$$part: $$r in $$(( $$(date +%s) - t0 )) s"; \
	done; \
	echo "check: took $$(( $$(date +%s) - t )) s"; \
	if [ -z "$$failed" ]; then echo "check: all passed"; else echo "check: FAILED:$$failed"; exit 1; fi

# ---------------------------------------------------------------------------
# Sanitizers: a copy of the tree, built with clang -fsanitize=address,undefined

SAN_CFLAGS = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
SAN_LDFLAGS = -fsanitize=address,undefined
# Reports go to files, one per process, so that a report from any program
# the tests start (servers, clients, the proxy) is seen, even when the test
# itself passed: any file in sanitizer-logs/ fails the check. Programs the
# tests kill with SIGKILL on purpose write none. Leaks are checked at every
# normal exit. The per-test limit is twice make test's 90 s: the sanitizers
# make the programs 2-4 times slower, and a limit below the normal build's
# fails the slow tests (the docs, a million rows) on a loaded machine.
SAN_ENV = ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:log_path=$$d/sanitizer-logs/asan \
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1:log_path=$$d/sanitizer-logs/ubsan \
	CHAT_SANITIZED=1 TEST_TIMEOUT=180

# The files of the tree: what git knows (tracked, or new and not ignored),
# or without git the sources by name; and this fragment's own files, which
# the top .gitignore may hide.
CHECK_SOURCES = Makefile README.md TUTORIAL.md .clang-format .clang-tidy common/Makefile common/build.mk \
	common/*.[ch] step*/Makefile step*/*.c tests/Makefile tests/*.[ch] tests/*.md tests/corpus/*/*
CHECK_LIST_FILES = { git ls-files -co --exclude-standard 2>/dev/null || ls -d $(CHECK_SOURCES) 2>/dev/null; \
	ls -d tests/*.mk tests/*.supp .clang-tidy 2>/dev/null; } | sort -u

check-asan:
	@d=$$(mktemp -d "$(CHECK_TMP)/chat-check-asan.XXXXXX"); st=0; \
	$(CHECK_LIST_FILES) | while IFS= read -r f; do \
	  [ -f "$$f" ] || continue; mkdir -p "$$d/$$(dirname "$$f")"; cp -p "$$f" "$$d/$$f"; \
	done; \
	mkdir "$$d/sanitizer-logs"; \
	echo "check-asan: building with $(CHECK_CLANG) $(SAN_CFLAGS) in $$d"; \
	if ! $(MAKE) -s -C "$$d" CC=$(CHECK_CLANG) EXTRA_CFLAGS="$(SAN_CFLAGS)" EXTRA_LDFLAGS="$(SAN_LDFLAGS)" \
	    all >"$$d/build.log" 2>&1; then \
	  cat "$$d/build.log"; echo "check-asan: the build failed (kept $$d)"; exit 1; \
	fi; \
	t0=$$(date +%s); \
	env $(SAN_ENV) $(MAKE) -s -C "$$d" CC=$(CHECK_CLANG) EXTRA_CFLAGS="$(SAN_CFLAGS)" EXTRA_LDFLAGS="$(SAN_LDFLAGS)" \
	    test >"$$d/test.log" 2>&1 || st=1; \
	grep -v '^PASS ' "$$d/test.log" | grep -v '^make' | tail -n 200; \
	echo "check-asan: make test took $$(( $$(date +%s) - t0 )) s"; \
	t0=$$(date +%s); \
	(cd "$$d" && env $(SAN_ENV) tests/lab >lab.log 2>&1) || { st=1; cat "$$d/lab.log"; }; \
	echo "check-asan: tests/lab took $$(( $$(date +%s) - t0 )) s"; \
	for f in "$$d"/sanitizer-logs/*; do \
	  [ -f "$$f" ] || continue; st=1; echo "check-asan: sanitizer report $$f:"; cat "$$f"; \
	done; \
	if [ $$st = 0 ]; then rm -rf "$$d"; else echo "check-asan: FAILED (kept $$d)"; fi; \
	exit $$st

# ---------------------------------------------------------------------------
# Valgrind memcheck: the normal build (cc -O2 -gdwarf-4, see common/build.mk), under valgrind

tests/memcheck: tests/memcheck.c tests/harness.c tests/harness.h tests/suites.h common/limits.h common/util.c common/store.c common/store.h
	$(CC) $(CHECK_STD) $(CHECK_WARN) -O2 -g $(CHECK_SQLITE_CFLAGS) -Icommon -o $@ tests/memcheck.c \
	  tests/harness.c common/util.c common/store.c $(CHECK_SQLITE_LIBS)

check-valgrind: tests/memcheck
	@command -v valgrind >/dev/null || { echo "check-valgrind: valgrind is not installed"; exit 1; }
	@$(MAKE) -s all
	@VALGRIND=$$(command -v valgrind) TEST_JOBS=2 TEST_TIMEOUT=120 tests/memcheck

# ---------------------------------------------------------------------------
# Fuzzing with libFuzzer: tests/fuzz_line (common/line.c) and
# tests/fuzz_server1..4 (a step's server.c, one connection)

FUZZ_CFLAGS = $(CHECK_STD) $(CHECK_WARN) -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	$(CHECK_SQLITE_CFLAGS) -Icommon
FUZZ_SERVER_LIBS = common/buf.c common/line.c common/log.c common/net.c common/stop.c common/util.c common/conn.c common/options.c \
	common/clients.c
FUZZ_TARGETS = line server1 server3 server4
# libFuzzer options: inputs up to 20000 bytes (lines over MAX_LINE), a slow
# input is a failure after 10 s, new inputs go to the work dir first.
FUZZ_OPTS = -max_len=20000 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1

tests/fuzz_line: tests/fuzz_line.c common/line.c common/line.h common/limits.h
	$(CHECK_CLANG) $(FUZZ_CFLAGS) -o $@ tests/fuzz_line.c common/line.c

tests/fuzz_server%: tests/fuzz_server.c step%/server.c $(FUZZ_SERVER_LIBS) common/store.c common/*.h
	$(CHECK_CLANG) $(FUZZ_CFLAGS) -DFUZZ_STEP=$* -o $@ tests/fuzz_server.c $(FUZZ_SERVER_LIBS) \
	  $(CHECK_SQLITE_LIBS)

# One target: fuzz-run-line, fuzz-run-server4, ... Its corpus is
# tests/corpus/line or tests/corpus/server (read, never written).
fuzz-run-%: tests/fuzz_%
	@name=$*; corpus=tests/corpus/$$(echo $* | sed 's/[0-9]*$$//'); \
	w=$$(mktemp -d "$(CHECK_TMP)/chat-fuzz-$*.XXXXXX"); mkdir "$$w/new"; \
	if tests/fuzz_$* $(FUZZ_OPTS) -max_total_time=$(FUZZ_SECONDS) -artifact_prefix="$$w/" \
	    "$$w/new" "$$corpus" >"$$w/log" 2>&1; then \
	  echo "fuzz_$*: $$(grep -a '^Done' "$$w/log" | tail -n 1), corpus $$(ls "$$corpus" | wc -l | tr -d ' ')+$$(ls "$$w/new" | wc -l | tr -d ' '), no crash"; \
	  if [ -n "$(FUZZ_KEEP)" ]; then echo "fuzz_$*: new inputs kept in $$w/new; merge: tests/fuzz_$* -merge=1 $$corpus $$w/new"; \
	  else rm -rf "$$w"; fi; \
	else \
	  grep -a -v '^#\|^"\|^INFO\|^MS:\|^base unit' "$$w/log" | tail -n 60; \
	  echo "fuzz_$*: FAILED; the input: $$(ls "$$w"/crash-* "$$w"/leak-* "$$w"/timeout-* "$$w"/oom-* 2>/dev/null | head -n 1); log: $$w/log"; \
	  exit 1; \
	fi

check-fuzz: $(FUZZ_TARGETS:%=tests/fuzz_%)
	@$(MAKE) --no-print-directory -k -j2 $(FUZZ_TARGETS:%=fuzz-run-%)

fuzz: $(FUZZ_TARGETS:%=tests/fuzz_%)
	@$(MAKE) --no-print-directory -k -j2 FUZZ_KEEP=1 $(FUZZ_TARGETS:%=fuzz-run-%)

# ---------------------------------------------------------------------------
# Static analysis: cppcheck and clang-tidy (its checks are in .clang-tidy)

LINT_FILES = $(sort $(wildcard common/*.c step*/*.c tests/*.c))
# cppcheck does not know C11's _Noreturn: without this, every REQUIRE() of
# the tests is "a possible null pointer dereference" after it.
CPPCHECK_FLAGS = --enable=warning,portability,performance --error-exitcode=1 --inline-suppr \
	--suppressions-list=tests/cppcheck.supp --std=c11 -D_POSIX_C_SOURCE=200809L \
	"-D_Noreturn=__attribute__((noreturn))" -Icommon -q \
	--template='{file}:{line}:{column}: {severity}: {message} [{id}]'
# Tests and tools may parse their own output with atoi(), run a shell with
# popen() (tests/docs.c), and fill byte buffers that are not strings.
TIDY_TESTS_CHECKS = -cert-err34-c,-cert-env33-c,-bugprone-not-null-terminated-result
TIDY_ARGS = -- $(CHECK_STD) $(CHECK_SQLITE_CFLAGS) -Icommon

check-lint:
	@command -v cppcheck >/dev/null && command -v clang-tidy >/dev/null || \
	  { echo "check-lint: cppcheck or clang-tidy is not installed"; exit 1; }
	@st=0; st2=0; \
	cppcheck $(CPPCHECK_FLAGS) $(LINT_FILES) || st=1; \
	echo "check-lint: cppcheck $$([ $$st = 0 ] && echo clean || echo FAILED)"; \
	out=$$(mktemp "$(CHECK_TMP)/chat-tidy.XXXXXX"); \
	printf '%s\n' $(filter-out tests/%,$(LINT_FILES)) | \
	  xargs -P 2 -I{} clang-tidy --quiet --warnings-as-errors='*' {} $(TIDY_ARGS) >"$$out" 2>&1 || st2=1; \
	printf '%s\n' $(filter tests/%,$(LINT_FILES)) | \
	  xargs -P 2 -I{} clang-tidy --quiet --warnings-as-errors='*' --checks='$(TIDY_TESTS_CHECKS)' {} $(TIDY_ARGS) \
	  >>"$$out" 2>&1 || st2=1; \
	grep -E '^[^ ].*:[0-9]+:[0-9]+: (warning|error):' "$$out" | sed "s|^$$(pwd)/||" | sort -u; \
	if [ $$st2 = 0 ]; then echo "check-lint: clang-tidy clean"; rm -f "$$out"; \
	else echo "check-lint: clang-tidy FAILED (the analyzer's paths: $$out)"; fi; \
	[ $$st = 0 ] && [ $$st2 = 0 ]

check-clean:
	rm -f tests/memcheck tests/fuzz_line $(foreach n,1 2 3 4,tests/fuzz_server$(n))

.PHONY: check check-asan check-valgrind check-fuzz check-lint check-clean fuzz

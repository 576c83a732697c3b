# Top-level: build every step, run the lab, run the tests.
#   make          build common/, every step, the tests and the lab
#   make demo     the delivery lab: which faults lose or duplicate messages, per step
#   make test     the test suite; ends with "N passed, N failed"
#   make bench    the price of each guarantee: msg/s, latency, memory (under a minute)
#   make grade STEP=3 DIR=mystep3   a student's own step, graded by the lab and the tests
#   make -C step1 build one step alone
STEPS := $(patsubst %/Makefile,%,$(sort $(wildcard step*/Makefile)))

all: $(STEPS) tests

common:
	$(MAKE) -C common

$(STEPS): common
	$(MAKE) -C $@

tests: $(STEPS)
	$(MAKE) -C tests

test: all
	@$(MAKE) --no-print-directory -C tests run

# The table, and only the table: the build says nothing unless it fails.
demo:
	@$(MAKE) -s --no-print-directory all >/dev/null
	@tests/lab

# A student's step (TUTORIAL, "Build it yourself"): DIR's Makefile builds
# server and client; STEP is 1-4, durable or window. The verdict comes last.
grade:
	@$(MAKE) -s --no-print-directory all >/dev/null
	@tests/grade "$(STEP)" "$(DIR)"

# The price of each guarantee: throughput, latency and memory per step.
bench: all
	tests/bench

# Regenerate the diffs and figures shown in README.md, TUTORIAL.md and
# tests/README.md from the code (a test fails when they are out of date).
diffs: all
	tests/docs README.md TUTORIAL.md tests/README.md

# The same, and also the figures that depend on the machine (make bench).
bench-doc: all
	tests/docs --samples README.md TUTORIAL.md tests/README.md

# One .clang-format for the whole tree: formatting never shows up in a step diff.
SOURCES = $(wildcard common/*.[ch] step*/*.c tests/*.[ch])
format:
	clang-format -i $(SOURCES)

format-check:
	@out=$$(for f in $(SOURCES); do clang-format "$$f" | cmp -s - "$$f" || echo "$$f"; done); \
	if [ -n "$$out" ]; then echo "not formatted (run make format):"; echo "$$out"; exit 1; fi; \
	echo "format-check: all $(words $(SOURCES)) files follow .clang-format"

clean:
	for d in common $(STEPS) tests; do $(MAKE) -C $$d clean; done

.PHONY: all common $(STEPS) tests test demo grade bench bench-doc diffs format format-check clean

# make check, make fuzz: the proof under stress (sanitizers, valgrind, fuzzing, static analysis).
include tests/check.mk

# Shared build settings, included by every step's Makefile, by common/ and by tests/.
# C11 + POSIX.1-2008 and nothing else, so the code builds on Linux and macOS alike.
# CI adds -Werror with: make EXTRA_CFLAGS=-Werror
CC      ?= cc
# DWARF 4 debug info: valgrind 3.19 (Debian 12) cannot read clang 14's
# default DWARF 5, and make check runs valgrind on what CI built last.
CFLAGS  ?= -O2 -gdwarf-4
STD     := -std=c11 -D_POSIX_C_SOURCE=200809L
# macOS hides the BSD types its own <netinet/tcp.h> uses (u_char, u_short)
# when only POSIX is asked for; _DARWIN_C_SOURCE brings them back.
ifeq ($(shell uname -s),Darwin)
STD     += -D_DARWIN_C_SOURCE
endif
WARN    := -Wall -Wextra -Wpedantic
SQLITE_CFLAGS := $(shell pkg-config --cflags sqlite3)
SQLITE_LIBS   := $(shell pkg-config --libs sqlite3)
ALL_CFLAGS = $(STD) $(WARN) $(CFLAGS) $(EXTRA_CFLAGS) $(SQLITE_CFLAGS) -I$(ROOT)/common
LIBCOMMON  = $(ROOT)/common/libcommon.a
LDLIBS_ALL = $(LIBCOMMON) $(SQLITE_LIBS) $(EXTRA_LDFLAGS)

/* docs.c -- keep README.md, TUTORIAL.md and tests/README.md true to the code.
 *
 *   tests/docs [--root DIR] FILE...          regenerate the generated blocks (make diffs)
 *   tests/docs [--root DIR] --check FILE...  exit 1 if a generated block is out of date
 *   tests/docs [--root DIR] --run FILE...    run every ```sh run block; exit 1 if one fails
 *   tests/docs [--root DIR] --samples FILE... also regenerate the sample blocks (slow: make bench-doc)
 *
 * A generated block is the text between a marker line and "<!-- end -->":
 *   <!-- diff: step2/client.c step3/client.c -->   diff -u -p of the two files
 *   <!-- excerpt: step1/server.c on_hello -->      one definition, copied from the file
 *   <!-- output: tests/lab --step 3 -->            what the command prints on stdout
 *   <!-- sample: tests/bench -->                   the same, for figures that depend on the
 *                                                  machine: regenerated only with --samples,
 *                                                  never compared
 * The block holds the fenced output, so the documents show the real diffs and
 * the real figures, and a test fails when they no longer match the code.
 *
 * An excerpt names a file and one top-level definition in it, found by the
 * shape our one .clang-format gives the code (no markers in the source, so
 * a step diff never shows one):
 *   a function     on_hello      from the line at column 0 that has
 *                                "on_hello(" and does not end in ";"
 *   a struct/enum  struct client from the line "struct client {"
 *   a variable     server        from the last line at column 0 ending in "{"
 *                                before the line "} server;"
 * in each case to the next line that starts with "}" at column 0, and with
 * the comment right above it (a block that starts with slash-star at column
 * 0 and ends on the line before), since that comment says why. A name with
 * no such definition fails, and so does an excerpt longer than
 * EXCERPT_MAX_LINES: show a function, not a file.
 *
 * One exception, in --check only: the lab's shuffled row ("all faults") may
 * differ by a few messages from run to run (see TUTORIAL.md, "The lab"), so its
 * counts are not compared; test_lab.c asserts its guarantees instead. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define END_MARK "<!-- end -->"
#define VARYING_ROW "all faults"
#define EXCERPT_MAX_LINES 60

enum mode { GENERATE, CHECK, RUN, SAMPLES };

struct text {
    char *data;
    size_t len, cap;
};

static void text_add(struct text *t, const char *s, size_t n) {
    if (t->len + n + 1 > t->cap) {
        t->cap = (t->len + n + 1) * 2;
        t->data = realloc(t->data, t->cap);
        if (t->data == NULL) {
            perror("docs");
            exit(2);
        }
    }
    memcpy(t->data + t->len, s, n);
    t->len += n;
    t->data[t->len] = '\0';
}

/* The whole file, or NULL if it cannot be opened. */
static char *try_read_file(const char *path) {
    struct text t = {0};
    char chunk[8192];
    size_t n;
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return NULL;
    }
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        text_add(&t, chunk, n);
    }
    fclose(f);
    text_add(&t, "", 0);
    return t.data;
}

static char *read_file(const char *path) {
    char *s = try_read_file(path);
    if (s == NULL) {
        perror(path);
        exit(2);
    }
    return s;
}

/* What a shell command prints on stdout, and whether it exited 0. */
static char *command_output(const char *cmd, int *ok) {
    struct text t = {0};
    char chunk[8192];
    size_t n;
    FILE *p = popen(cmd, "r");
    if (p == NULL) {
        perror("popen");
        exit(2);
    }
    text_add(&t, "", 0);
    while ((n = fread(chunk, 1, sizeof chunk, p)) > 0) {
        text_add(&t, chunk, n);
    }
    int status = pclose(p);
    *ok = WIFEXITED(status) && (WEXITSTATUS(status) == 0 || strncmp(cmd, "diff ", 5) == 0);
    return t.data;
}

static const char *next_line(const char *p) {
    const char *nl = strchr(p, '\n');
    return nl != NULL ? nl + 1 : p + strlen(p);
}

/* A line at column 0 that opens a block: it ends in "{". */
static int opens_block(const char *p) {
    size_t n = strcspn(p, "\n");
    return n > 0 && p[n - 1] == '{' && strchr(" \t/#}", *p) == NULL;
}

/* Is the line at p the first line of the definition of `name`? See the
 * top of this file for the shapes; a variable is found by its last line. */
static int defines(const char *p, const char *name) {
    size_t n = strcspn(p, "\n"), len = strlen(name);
    if (n == 0 || strchr(" \t/#}", *p) != NULL || p[n - 1] == ';') {
        return 0;
    }
    if (strchr(name, ' ') != NULL) {
        return opens_block(p) && n == len + 2 && strncmp(p, name, len) == 0;
    }
    for (const char *q = p; (q = strstr(q, name)) != NULL && q < p + n; q += len) {
        if ((q == p || q[-1] == ' ' || q[-1] == '*') && q[len] == '(') {
            return 1;
        }
    }
    return 0;
}

/* Where the definition of `name` starts (with the comment right above
 * it) and ends (after its closing line). Returns 0 if there is none. */
static int find_definition(const char *src, const char *name, const char **from, const char **to) {
    const char *comment = NULL, *after_comment = NULL, *opener = NULL, *start = NULL;
    size_t len = strlen(name);
    int in_comment = 0; /* in a comment that starts at column 0 */
    for (const char *p = src; *p != '\0'; p = next_line(p)) {
        size_t n = strcspn(p, "\n");
        if (start == NULL && strncmp(p, "/*", 2) == 0) {
            comment = p;
            in_comment = 1;
        }
        if (start == NULL && in_comment && n >= 2 && strncmp(p + n - 2, "*/", 2) == 0) {
            after_comment = next_line(p);
            in_comment = 0;
        }
        if (start == NULL && defines(p, name)) {
            start = p;
        } else if (start == NULL && opens_block(p)) {
            opener = p;
        } else if (start == NULL && opener != NULL && n == len + 3 && strncmp(p, "} ", 2) == 0 &&
                   strncmp(p + 2, name, len) == 0 && p[n - 1] == ';') {
            start = opener;
        }
        if (start != NULL && *p == '}') {
            *from = start == after_comment ? comment : start;
            *to = next_line(p);
            return 1;
        }
    }
    return 0;
}

/* The block for "<!-- excerpt: FILE NAME -->": NAME's definition in FILE,
 * fenced as C. Says why on stderr when it cannot. */
static char *excerpt(const char *arg, int *ok) {
    char file[256], name[256];
    struct text t = {0};
    const char *from, *to;
    text_add(&t, "```c\n", 5);
    const char *spec = arg + strlen("<!-- excerpt: "), *end = strstr(spec, " -->");
    int flen = (int)strcspn(spec, " ");
    if (end == NULL || spec + flen >= end) {
        fprintf(stderr, "docs: an excerpt is <!-- excerpt: FILE NAME -->\n");
        *ok = 0;
        text_add(&t, "```\n", 4);
        return t.data;
    }
    snprintf(file, sizeof file, "%.*s", flen, spec);
    snprintf(name, sizeof name, "%.*s", (int)(end - spec - flen - 1), spec + flen + 1);
    char *src = try_read_file(file);
    if (src == NULL) {
        fprintf(stderr, "docs: cannot read %s for an excerpt\n", file);
        *ok = 0;
    } else if (!find_definition(src, name, &from, &to)) {
        fprintf(stderr, "docs: %s has no definition of \"%s\" (a function, struct or variable at column 0)\n",
                file, name);
        *ok = 0;
    } else {
        int lines = 0;
        for (const char *p = from; p < to; p = next_line(p)) {
            lines++;
        }
        if (lines > EXCERPT_MAX_LINES) {
            fprintf(stderr, "docs: %s %s is %d lines, over %d: excerpt something shorter\n", file, name,
                    lines, EXCERPT_MAX_LINES);
            *ok = 0;
        }
        text_add(&t, from, (size_t)(to - from));
    }
    free(src);
    text_add(&t, "```\n", 4);
    return t.data;
}

/* The block a marker stands for: a fenced diff, excerpt or output. */
static char *generate(const char *marker, size_t len, int *ok) {
    char arg[512], cmd[1200], a[256], b[256];
    const char *lang = "text";
    snprintf(arg, sizeof arg, "%.*s", (int)len, marker);
    if (strncmp(arg, "<!-- excerpt: ", 14) == 0) {
        return excerpt(arg, ok);
    }
    if (sscanf(arg, "<!-- diff: %255s %255s -->", a, b) == 2) {
        snprintf(cmd, sizeof cmd, "diff -u -p -L %s -L %s %s %s", a, b, a, b);
        lang = "diff";
    } else {
        char *end = strstr(arg, " -->");
        const char *cmd_start = strchr(arg, ':') + 2;
        snprintf(cmd, sizeof cmd, "%.*s 2>/dev/null", (int)(end - cmd_start), cmd_start);
    }
    char *out = command_output(cmd, ok);
    struct text t = {0};
    text_add(&t, "```", 3);
    text_add(&t, lang, strlen(lang));
    text_add(&t, "\n", 1);
    text_add(&t, out, strlen(out));
    text_add(&t, "```\n", 4);
    free(out);
    return t.data;
}

/* Compare two blocks line by line, skipping the counts of the varying row. */
static int same_block(const char *old, const char *new) {
    while (*old != '\0' || *new != '\0') {
        size_t lo = strcspn(old, "\n"), ln = strcspn(new, "\n");
        int varying = strncmp(old, VARYING_ROW, strlen(VARYING_ROW)) == 0 &&
                      strncmp(new, VARYING_ROW, strlen(VARYING_ROW)) == 0;
        if (!varying && (lo != ln || memcmp(old, new, lo) != 0)) {
            fprintf(stderr, "  expected: %.*s\n  found:    %.*s\n", (int)ln, new, (int)lo, old);
            return 0;
        }
        old += lo + (old[lo] == '\n');
        new += ln + (new[ln] == '\n');
    }
    return 1;
}

static int is_marker(const char *p, enum mode mode) {
    return strncmp(p, "<!-- diff: ", 11) == 0 || strncmp(p, "<!-- excerpt: ", 14) == 0 ||
           strncmp(p, "<!-- output: ", 13) == 0 || (mode == SAMPLES && strncmp(p, "<!-- sample: ", 13) == 0);
}

/* Regenerate (or check) every block of one file. Returns 0 if all is well.
 * `copied` is how far the original text has gone into `out`. */
static int process_generated(const char *path, enum mode mode) {
    char *doc = read_file(path);
    const char *p = doc, *copied = doc;
    struct text out = {0};
    int bad = 0;
    text_add(&out, "", 0);
    while ((p = strstr(p, "<!-- ")) != NULL) {
        const char *eol = strchr(p, '\n'), *end = eol ? strstr(eol, END_MARK) : NULL;
        int ok = 1;
        if (!is_marker(p, mode) || end == NULL) {
            p += 5;
            continue;
        }
        char *block = generate(p, (size_t)(eol - p), &ok);
        char *old = strndup(eol + 1, (size_t)(end - eol - 1));
        if (!ok || (mode == CHECK && !same_block(old, block))) {
            fprintf(stderr, "%s: %.*s %s\n", path, (int)(eol - p), p,
                    ok ? "is out of date (make diffs)" : "failed");
            bad = 1;
        }
        text_add(&out, copied, (size_t)(eol + 1 - copied));
        text_add(&out, block, strlen(block));
        copied = end;
        p = end + strlen(END_MARK);
        free(old);
        free(block);
    }
    text_add(&out, copied, strlen(copied));
    if ((mode == GENERATE || mode == SAMPLES) && !bad) {
        FILE *f = fopen(path, "w");
        if (f == NULL || fwrite(out.data, 1, out.len, f) != out.len || fclose(f) != 0) {
            perror(path);
            bad = 1;
        }
    }
    free(out.data);
    free(doc);
    return bad;
}

/* Run every block fenced as ```sh run, each as one sh -e script. */
static int process_runnable(const char *path) {
    char *doc = read_file(path), *p = doc;
    int bad = 0;
    while ((p = strstr(p, "```sh run\n")) != NULL) {
        char *body = p + strlen("```sh run\n"), *end = strstr(body, "```");
        if (end == NULL) {
            break;
        }
        *end = '\0';
        fprintf(stderr, "%s: running: %s", path, body);
        char *script = malloc(strlen(body) + 32);
        sprintf(script, "set -e\n%s", body);
        pid_t pid = fork();
        if (pid == 0) {
            execl("/bin/sh", "sh", "-c", script, (char *)NULL);
            _exit(127);
        }
        int status = -1;
        waitpid(pid, &status, 0);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "%s: FAILED: %s", path, body);
            bad = 1;
        }
        free(script);
        p = end + 1;
    }
    free(doc);
    return bad;
}

int main(int argc, char **argv) {
    enum mode mode = GENERATE;
    int bad = 0, i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "--check") == 0) {
            mode = CHECK;
        } else if (strcmp(argv[i], "--run") == 0) {
            mode = RUN;
        } else if (strcmp(argv[i], "--samples") == 0) {
            mode = SAMPLES;
        } else if (strcmp(argv[i], "--root") == 0 && i + 1 < argc && chdir(argv[++i]) == 0) {
            continue;
        } else {
            fprintf(stderr, "usage: docs [--root DIR] [--check | --run | --samples] FILE...\n");
            return 2;
        }
    }
    for (; i < argc; i++) {
        bad |= mode == RUN ? process_runnable(argv[i]) : process_generated(argv[i], mode);
    }
    return bad;
}

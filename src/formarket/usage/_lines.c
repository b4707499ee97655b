/* Usage lines in the form the collectors write them, read into columns in C.

   A file of usage is almost always written by formarket's own collectors: every line one
   event, its fields in the schema's order, no spaces, strings of plain ASCII, times in UTC
   with a "Z". `parse` reads such a file without making a Python object per event: numbers
   and times into arrays, each string field into a small table of its distinct values with a
   number per line. Anything else at all (another field order, a space, an escape, a byte
   outside printable ASCII, a number out of bounds, a date that does not exist, a blank line)
   makes it return None, and the file is read as before (msgspec, then the loop), which says
   what is wrong where. So this reader never decides anything: it only ever accepts lines that
   msgspec decodes to exactly the values it returns (tests/usage/test_lines.py holds the two
   together on random clean and hostile files). The patterns of the strings are checked in
   Python, over the distinct values (formarket.usage.columns). */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* A table of the distinct values of one string field, each numbered in the order it is first
   met. Open addressing over small slots (a month's accounts are tens of thousands: 8 bytes a
   slot keep the probes in the cache); each value is copied, as it is met, into an arena of
   its own, so that comparing with it reads memory close by rather than a line far back in
   the file. */
typedef struct {
    uint32_t hash;   /* the high half of the value's hash */
    int32_t number;  /* -1: a free slot */
} Slot;

typedef struct {
    Slot *slots;
    Py_ssize_t capacity; /* a power of two */
    Py_ssize_t used;
    Py_ssize_t *offsets; /* by number */
    Py_ssize_t *lengths;
    uint64_t *hashes;
    char *arena;
    Py_ssize_t arena_used, arena_size;
    int32_t last; /* the value met last: lines in a row often share it */
} Table;

static int table_init(Table *t) {
    t->capacity = 64;
    t->used = 0;
    t->last = -1;
    t->arena_used = 0;
    t->arena_size = 4096;
    t->slots = malloc((size_t)t->capacity * sizeof(Slot));
    if (t->slots)
        for (Py_ssize_t i = 0; i < t->capacity; i++) t->slots[i].number = -1;
    t->offsets = malloc(sizeof(Py_ssize_t) * 32);
    t->lengths = malloc(sizeof(Py_ssize_t) * 32);
    t->hashes = malloc(sizeof(uint64_t) * 32);
    t->arena = malloc((size_t)t->arena_size);
    return t->slots && t->offsets && t->lengths && t->hashes && t->arena ? 0 : -1;
}

static void table_free(Table *t) {
    free(t->slots);
    free(t->offsets);
    free(t->lengths);
    free(t->hashes);
    free(t->arena);
}

/* Whether n bytes are the same, in 8-byte words: inlined and unrolled where n is a constant
   (the grammar's literals), where libc's memcmp was a call per literal. */
static inline __attribute__((always_inline)) int same(const char *a, const char *b, size_t n) {
    uint64_t x, y;
    while (n >= 8) {
        memcpy(&x, a, 8);
        memcpy(&y, b, 8);
        if (x != y) return 0;
        a += 8;
        b += 8;
        n -= 8;
    }
    while (n--)
        if (*a++ != *b++) return 0;
    return 1;
}

static uint64_t hash_of(const char *start, Py_ssize_t length) {
    uint64_t h = 0x9e3779b97f4a7c15ULL ^ (uint64_t)length;
    Py_ssize_t i = 0;
    for (; i + 8 <= length; i += 8) {
        uint64_t word;
        memcpy(&word, start + i, 8);
        h = (h ^ word) * 0x100000001b3ULL;
        h ^= h >> 29;
    }
    if (i < length) {
        uint64_t word = 0;
        memcpy(&word, start + i, (size_t)(length - i));
        h = (h ^ word) * 0x100000001b3ULL;
        h ^= h >> 29;
    }
    return h ^ (h >> 32);
}

static int table_grow(Table *t) {
    Py_ssize_t capacity = t->capacity * 2;
    Slot *slots = malloc((size_t)capacity * sizeof(Slot));
    uint64_t *hashes = realloc(t->hashes, sizeof(uint64_t) * (size_t)(capacity / 2));
    if (!slots || !hashes) {
        free(slots);
        if (hashes) t->hashes = hashes;
        return -1;
    }
    t->hashes = hashes;
    for (Py_ssize_t i = 0; i < capacity; i++) slots[i].number = -1;
    for (Py_ssize_t i = 0; i < t->capacity; i++) {
        Slot *s = &t->slots[i];
        if (s->number < 0) continue;
        Py_ssize_t j = (Py_ssize_t)(t->hashes[s->number] & (uint64_t)(capacity - 1));
        while (slots[j].number >= 0) j = (j + 1) & (capacity - 1);
        slots[j] = *s;
    }
    free(t->slots);
    t->slots = slots;
    t->capacity = capacity;
    /* The numbered lists hold at most half the capacity. */
    Py_ssize_t *offsets = realloc(t->offsets, sizeof(Py_ssize_t) * (size_t)(capacity / 2));
    if (!offsets) return -1;
    t->offsets = offsets;
    Py_ssize_t *lengths = realloc(t->lengths, sizeof(Py_ssize_t) * (size_t)(capacity / 2));
    if (!lengths) return -1;
    t->lengths = lengths;
    return 0;
}

/* The number of a value, added when new; -1 when out of memory. */
static int32_t table_number(Table *t, const char *start, Py_ssize_t length) {
    if (t->last >= 0 && t->lengths[t->last] == length &&
        same(t->arena + t->offsets[t->last], start, (size_t)length))
        return t->last;
    uint64_t h = hash_of(start, length);
    uint32_t high = (uint32_t)(h >> 32);
    Py_ssize_t mask = t->capacity - 1;
    Py_ssize_t j = (Py_ssize_t)(h & (uint64_t)mask);
    while (t->slots[j].number >= 0) {
        Slot *s = &t->slots[j];
        if (s->hash == high && t->lengths[s->number] == length &&
            same(t->arena + t->offsets[s->number], start, (size_t)length))
            return t->last = s->number;
        j = (j + 1) & mask;
    }
    if ((t->used + 1) * 2 > t->capacity) {
        if (table_grow(t) < 0) return -1;
        return table_number(t, start, length);
    }
    if (t->arena_used + length > t->arena_size) {
        Py_ssize_t size = (t->arena_size + length) * 2;
        char *arena = realloc(t->arena, (size_t)size);
        if (!arena) return -1;
        t->arena = arena;
        t->arena_size = size;
    }
    memcpy(t->arena + t->arena_used, start, (size_t)length);
    int32_t number = (int32_t)t->used;
    t->slots[j] = (Slot){high, number};
    t->offsets[number] = t->arena_used;
    t->lengths[number] = length;
    t->hashes[number] = h;
    t->arena_used += length;
    t->used++;
    return t->last = number;
}

static PyObject *table_values(Table *t) {
    PyObject *values = PyList_New(t->used);
    if (!values) return NULL;
    for (Py_ssize_t i = 0; i < t->used; i++) {
        /* Printable ASCII, checked as it was read: copied, not decoded again. */
        PyObject *value = PyUnicode_New(t->lengths[i], 127);
        if (!value) {
            Py_DECREF(values);
            return NULL;
        }
        memcpy(PyUnicode_1BYTE_DATA(value), t->arena + t->offsets[i], (size_t)t->lengths[i]);
        PyList_SET_ITEM(values, i, value);
    }
    return values;
}

/* --- the line's grammar ---------------------------------------------------------------- */

typedef struct {
    const char *p;
    const char *end; /* the line's end */
} Cursor;

#define LITERAL(c, text) literal((c), (text), sizeof(text) - 1)

static inline __attribute__((always_inline)) int literal(Cursor *c, const char *text,
                                                        Py_ssize_t length) {
    if (c->end - c->p < length || !same(c->p, text, (size_t)length)) return 0;
    c->p += length;
    return 1;
}

/* A string's characters up to its closing quote (consumed): 1 to `longest` bytes of printable
   ASCII without a backslash (msgspec's own bounds count characters, which are bytes here). */
/* The bytes a string may hold here: printable ASCII but the quote and the backslash. */
static unsigned char plain[256];

static void plain_init(void) {
    for (int ch = 0x20; ch <= 0x7e; ch++) plain[ch] = ch != '"' && ch != '\\';
}

static inline int string_of(Cursor *c, Py_ssize_t longest, const char **start, Py_ssize_t *length) {
    const unsigned char *p = (const unsigned char *)c->p;
    const unsigned char *stop =
        (const unsigned char *)(c->end - c->p > longest ? c->p + longest : c->end);
    while (p < stop && plain[*p]) p++;
    if ((const char *)p >= c->end || *p != '"' || (const char *)p == c->p) return 0;
    *start = c->p;
    *length = (const char *)p - c->p;
    c->p = (const char *)p + 1;
    return 1;
}

/* A count: 0 or digits without a leading zero, at most `most`. */
static inline int count_of(Cursor *c, int64_t most, int64_t *value) {
    const char *p = c->p;
    if (p >= c->end || *p < '0' || *p > '9') return 0;
    if (*p == '0') {
        *value = 0;
        c->p = p + 1;
        return c->p < c->end && (*c->p == ',' || *c->p == '}');
    }
    int64_t v = 0;
    int digits = 0;
    while (p < c->end && *p >= '0' && *p <= '9') {
        if (++digits > 18) return 0;
        v = v * 10 + (*p - '0');
        p++;
    }
    if (v > most || p >= c->end || (*p != ',' && *p != '}')) return 0;
    *value = v;
    c->p = p;
    return 1;
}

static int digits_of(const char *p, int n, int *value) {
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') return 0;
        v = v * 10 + (p[i] - '0');
    }
    *value = v;
    return 1;
}

static int64_t days_from_civil(int64_t y, int m, int d) {
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* "YYYY-MM-DDTHH:MM:SS" with no fraction or one of 3 or 6 digits, then "Z" and the closing
   quote: microseconds since 1970-01-01 UTC. */
static int time_of(Cursor *c, int64_t *micros) {
    const char *p = c->p;
    Py_ssize_t left = c->end - p;
    int y, mo, d, h, mi, s, fraction = 0, places = 0;
    if (left < 21) return 0;
    if (!digits_of(p, 4, &y) || p[4] != '-' || !digits_of(p + 5, 2, &mo) || p[7] != '-' ||
        !digits_of(p + 8, 2, &d) || p[10] != 'T' || !digits_of(p + 11, 2, &h) || p[13] != ':' ||
        !digits_of(p + 14, 2, &mi) || p[16] != ':' || !digits_of(p + 17, 2, &s))
        return 0;
    p += 19;
    if (*p == '.') {
        const char *q = p + 1;
        while (q < c->end && *q >= '0' && *q <= '9') q++;
        places = (int)(q - p - 1);
        if ((places != 3 && places != 6) || !digits_of(p + 1, places, &fraction)) return 0;
        p = q;
    }
    if (c->end - p < 2 || p[0] != 'Z' || p[1] != '"') return 0;
    static const int month_days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (y < 1 || mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || s > 59) return 0;
    if (d > month_days[mo - 1] + (mo == 2 && leap)) return 0;
    int64_t micro = places == 3 ? (int64_t)fraction * 1000 : (int64_t)fraction;
    *micros = ((days_from_civil(y, mo, d) * 24 + h) * 60 + mi) * 60 * 1000000LL +
              (int64_t)s * 1000000LL + micro;
    c->p = p + 2;
    return 1;
}

/* An agent or a model: null (number -1) or {"id":"...","version":"..."}, the two strings one
   value of the table, joined by a line break (which no string here holds). */
static int ref_of(Cursor *c, Table *refs, int32_t *number) {
    if (LITERAL(c, "null")) {
        *number = -1;
        return 1;
    }
    const char *id, *version;
    Py_ssize_t id_length, version_length;
    if (!LITERAL(c, "{\"id\":\"") || !string_of(c, 128, &id, &id_length) ||
        !LITERAL(c, ",\"version\":\"") || !string_of(c, 128, &version, &version_length) ||
        !LITERAL(c, "}"))
        return 0;
    /* The pair lies in the line as `id","version":"version`: that span names it, since
       neither string holds a quote. */
    *number = table_number(refs, id, (version + version_length) - id);
    return *number >= 0 ? 1 : -1;
}

enum { T_SOURCE, T_SUBJECT, T_ACCOUNT, T_REF, T_TOKENS, T_PARENT, TABLES };

typedef struct {
    int64_t *times, *requests, *inputs, *outputs, *seconds, *starts;
    uint8_t *calls, *oks;
    int32_t *codes[TABLES];
    int32_t *models; /* the model's number in T_REF; codes[T_REF] holds the agent's */
    char *ids; /* every id followed by a line break, copied as it is read */
    Py_ssize_t ids_used;
    uint8_t *id_lengths;
    Table tables[TABLES];
    /* Fields kept joined rather than numbered: each value followed by a line break, as the
       pattern checks take them (deployments always: only their pattern is checked; accounts
       unless each event's paying account is wanted). */
    char *joined[TABLES];
    Py_ssize_t joined_used[TABLES];
} Columns;

static const char CALL[] = "dev.formarket.usage.call";
static const char HOURS[] = "dev.formarket.usage.instance-hours";

/* One line into row `i`: 1 when it is in the collectors' form, 0 when not, -1 when out of
   memory. */
static int line_of(Cursor *c, Columns *out, Py_ssize_t i, int64_t most) {
    const char *start;
    Py_ssize_t length;
    int64_t value;
    int32_t number;
#define NUMBERED(table, into)                                                    \
    do {                                                                         \
        number = table_number(&out->tables[table], start, length);               \
        if (number < 0) return -1;                                               \
        (into) = number;                                                         \
    } while (0)
#define JOINED_OR_NUMBERED(table, into)                                          \
    do {                                                                         \
        char *joined = out->joined[table];                                       \
        if (joined) {                                                            \
            memcpy(joined + out->joined_used[table], start, (size_t)length);     \
            joined[out->joined_used[table] + length] = '\n';                     \
            out->joined_used[table] += length + 1;                               \
        } else {                                                                 \
            NUMBERED(table, into);                                               \
        }                                                                        \
    } while (0)

    if (!LITERAL(c, "{\"specversion\":\"1.0\",\"id\":\"") || !string_of(c, 128, &start, &length))
        return 0;
    memcpy(out->ids + out->ids_used, start, (size_t)length);
    out->ids[out->ids_used + length] = '\n';
    out->ids_used += length + 1;
    out->id_lengths[i] = (uint8_t)length;
    if (!LITERAL(c, ",\"source\":\"") || !string_of(c, 128, &start, &length)) return 0;
    NUMBERED(T_SOURCE, out->codes[T_SOURCE][i]);
    if (!LITERAL(c, ",\"type\":\"")) return 0;
    if (LITERAL(c, CALL)) {
        out->calls[i] = 1;
    } else if (LITERAL(c, HOURS)) {
        out->calls[i] = 0;
    } else {
        return 0;
    }
    if (!LITERAL(c, "\",\"time\":\"") || !time_of(c, &out->times[i])) return 0;
    if (!LITERAL(c, ",\"subject\":\"") || !string_of(c, 128, &start, &length)) return 0;
    JOINED_OR_NUMBERED(T_SUBJECT, out->codes[T_SUBJECT][i]);
    if (!LITERAL(c, ",\"datacontenttype\":\"application/json\",\"data\":{\"account\":\"") ||
        !string_of(c, 128, &start, &length))
        return 0;
    JOINED_OR_NUMBERED(T_ACCOUNT, out->codes[T_ACCOUNT][i]);
    int found;
    if (!LITERAL(c, ",\"agent\":")) return 0;
    found = ref_of(c, &out->tables[T_REF], &out->codes[T_REF][i]);
    if (found <= 0) return found;
    if (!LITERAL(c, ",\"model\":")) return 0;
    found = ref_of(c, &out->tables[T_REF], &out->models[i]);
    if (found <= 0) return found;
    if (!LITERAL(c, ",\"input_tokens\":") || !count_of(c, most, &out->inputs[i])) return 0;
    if (!LITERAL(c, ",\"output_tokens\":") || !count_of(c, most, &out->outputs[i])) return 0;
    if (!LITERAL(c, ",\"requests\":") || !count_of(c, most, &out->requests[i])) return 0;
    if (!LITERAL(c, ",\"duration_ms\":") || !count_of(c, most, &value)) return 0;
    if (!LITERAL(c, ",\"outcome\":\"")) return 0;
    if (LITERAL(c, "ok\"")) {
        out->oks[i] = 1;
    } else if (LITERAL(c, "error\"") || LITERAL(c, "rejected\"")) {
        out->oks[i] = 0;
    } else {
        return 0;
    }
    if (!LITERAL(c, ",\"tokens_source\":\"") || !string_of(c, 71, &start, &length)) return 0;
    NUMBERED(T_TOKENS, out->codes[T_TOKENS][i]);
    out->seconds[i] = 0;
    if (LITERAL(c, ",\"instance_seconds\":") && !count_of(c, most, &out->seconds[i])) return 0;
    if (LITERAL(c, ",\"cut\":")) {
        if (!LITERAL(c, "null") && !LITERAL(c, "\"max_tokens\"") && !LITERAL(c, "\"choices\"") &&
            !LITERAL(c, "\"budget\"") && !LITERAL(c, "\"size\"") &&
            !LITERAL(c, "\"duration\"") && !LITERAL(c, "\"idle\""))
            return 0;
    }
    out->codes[T_PARENT][i] = -1;
    if (LITERAL(c, ",\"parent\":")) {
        if (!LITERAL(c, "null")) {
            if (!LITERAL(c, "\"") || !string_of(c, 128, &start, &length)) return 0;
            NUMBERED(T_PARENT, out->codes[T_PARENT][i]);
        }
    }
    return LITERAL(c, "}}");
#undef JOINED_OR_NUMBERED
#undef NUMBERED
}

/* The columns are written straight into the bytes objects handed back: no copy after. */
enum {
    C_TIMES,
    C_REQUESTS,
    C_INPUTS,
    C_OUTPUTS,
    C_SECONDS,
    C_STARTS,
    C_CALLS,
    C_OKS,
    C_MODELS,
    C_CODES
};
#define COLUMNS (C_CODES + TABLES)

static PyObject *parse(PyObject *module, PyObject *args) {
    (void)module;
    Py_buffer view;
    long long most;
    Py_ssize_t longest_line;
    int payers;
    if (!PyArg_ParseTuple(args, "y*Lnp", &view, &most, &longest_line, &payers)) return NULL;
    const char *raw = view.buf;
    Py_ssize_t size = view.len;
    PyObject *result = NULL, *columns[COLUMNS] = {NULL};
    PyObject *padded = NULL, *joined = NULL, *lengths = NULL, *tables = NULL;
    PyObject *kept_joined[TABLES] = {NULL};
    Columns out;
    memset(&out, 0, sizeof out);
    int found = 0;

    /* Lines: every one ends with a line break but perhaps the last. */
    Py_ssize_t count = 0;
    for (const char *p = raw; (p = memchr(p, '\n', (size_t)(raw + size - p))) != NULL; p++) count++;
    if (size > 0 && raw[size - 1] != '\n') count++;
    if (count == 0) goto done;
    static const int widths[COLUMNS] = {8, 8, 8, 8, 8, 8, 1, 1, 4, 4, 4, 4, 4, 4, 4};
    for (int k = 0; k < COLUMNS; k++) {
        columns[k] = PyBytes_FromStringAndSize(NULL, count * widths[k]);
        if (!columns[k]) goto done;
    }
#define AS(type, k) ((type *)PyBytes_AS_STRING(columns[k]))
    out.times = AS(int64_t, C_TIMES);
    out.requests = AS(int64_t, C_REQUESTS);
    out.inputs = AS(int64_t, C_INPUTS);
    out.outputs = AS(int64_t, C_OUTPUTS);
    out.seconds = AS(int64_t, C_SECONDS);
    out.starts = AS(int64_t, C_STARTS);
    out.calls = AS(uint8_t, C_CALLS);
    out.oks = AS(uint8_t, C_OKS);
    out.models = AS(int32_t, C_MODELS);
    for (int t = 0; t < TABLES; t++) {
        out.codes[t] = AS(int32_t, C_CODES + t);
        if (table_init(&out.tables[t]) < 0) {
            found = -1;
            goto done;
        }
    }
#undef AS
    /* The ids and their line breaks fit in the file: each line holds its id and more. */
    joined = PyBytes_FromStringAndSize(NULL, size);
    out.ids = joined ? PyBytes_AS_STRING(joined) : NULL;
    out.id_lengths = malloc((size_t)count);
    if (!out.ids || !out.id_lengths) {
        found = -1;
        goto done;
    }
    /* So do the joined fields' values: each line holds its value and more. */
    for (int t = 0; t < TABLES; t++) {
        if (t != T_SUBJECT && (t != T_ACCOUNT || payers)) continue;
        kept_joined[t] = PyBytes_FromStringAndSize(NULL, size);
        if (!kept_joined[t]) goto failed;
        out.joined[t] = PyBytes_AS_STRING(kept_joined[t]);
    }

    Py_BEGIN_ALLOW_THREADS;
    /* No line break can be inside a line read here (strings hold none): each line is read
       to its end, which must be a line break or the end of the file. */
    Cursor c = {raw, raw + size};
    for (Py_ssize_t i = 0; i < count; i++) {
        const char *start = c.p;
        out.starts[i] = start - raw;
        found = line_of(&c, &out, i, (int64_t)most);
        if (found <= 0) break;
        if (c.p - start > longest_line || (c.p < c.end && *c.p != '\n')) {
            found = 0;
            break;
        }
        c.p++;
    }
    Py_END_ALLOW_THREADS;
    if (found <= 0) goto done;

    /* The ids, each zero-padded to a whole number of 8-byte words, as formarket.usage.digests
       takes them, and joined by line breaks, as the pattern check takes them. */
    Py_ssize_t longest = 0;
    for (Py_ssize_t i = 0; i < count; i++)
        if (out.id_lengths[i] > longest) longest = out.id_lengths[i];
    Py_ssize_t width = (longest + 7) / 8 * 8;
    padded = PyBytes_FromStringAndSize(NULL, width * count);
    lengths = PyBytes_FromStringAndSize(NULL, count * 8);
    tables = PyTuple_New(TABLES);
    if (!padded || !lengths || !tables || _PyBytes_Resize(&joined, out.ids_used) < 0)
        goto failed;
    char *pad = PyBytes_AS_STRING(padded);
    const char *id = PyBytes_AS_STRING(joined);
    uint64_t *length_words = (uint64_t *)PyBytes_AS_STRING(lengths);
    memset(pad, 0, (size_t)(width * count));
    for (Py_ssize_t i = 0; i < count; i++) {
        memcpy(pad + i * width, id, out.id_lengths[i]);
        id += out.id_lengths[i] + 1;
        length_words[i] = out.id_lengths[i];
    }
    for (int t = 0; t < TABLES; t++) {
        PyObject *values;
        if (kept_joined[t]) {
            /* The joined values, and no numbers (none were written). */
            if (_PyBytes_Resize(&kept_joined[t], out.joined_used[t]) < 0 ||
                _PyBytes_Resize(&columns[C_CODES + t], 0) < 0)
                goto failed;
            values = kept_joined[t];
            kept_joined[t] = NULL;
        } else {
            values = table_values(&out.tables[t]);
            if (!values) goto failed;
        }
        PyTuple_SET_ITEM(tables, t, values);
    }
    PyObject *codes = PyTuple_New(TABLES);
    if (!codes) goto failed;
    for (int t = 0; t < TABLES; t++) {
        PyTuple_SET_ITEM(codes, t, columns[C_CODES + t]);
        columns[C_CODES + t] = NULL;
    }
    result = Py_BuildValue("nNNNNNNNNNnNNNNN", count, columns[C_TIMES], columns[C_REQUESTS],
                           columns[C_INPUTS], columns[C_OUTPUTS], columns[C_SECONDS],
                           columns[C_STARTS], columns[C_CALLS], columns[C_OKS],
                           columns[C_MODELS], width, padded, lengths, joined, tables, codes);
    /* Py_BuildValue took every reference ("N"), whether it succeeded or not. */
    for (int k = 0; k < C_CODES; k++) columns[k] = NULL;
    padded = joined = lengths = tables = NULL;
    goto done;

failed:
    found = -2;
done:
    for (int k = 0; k < COLUMNS; k++) Py_XDECREF(columns[k]);
    Py_XDECREF(padded);
    Py_XDECREF(joined);
    Py_XDECREF(lengths);
    Py_XDECREF(tables);
    for (int t = 0; t < TABLES; t++) {
        Py_XDECREF(kept_joined[t]);
        table_free(&out.tables[t]);
    }
    free(out.id_lengths);
    PyBuffer_Release(&view);
    if (result) return result;
    if (found == -1) return PyErr_NoMemory();
    if (found == -2 || PyErr_Occurred()) return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"parse", parse, METH_VARARGS,
     "parse(raw, most, longest_line, payers): a file's columns, or None when a line is not in "
     "the collectors' form; without payers, the accounts joined rather than numbered."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "formarket.usage._lines",
                                    "Usage lines in the collectors' form, read into columns.",
                                    -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__lines(void) {
    plain_init();
    return PyModule_Create(&module);
}

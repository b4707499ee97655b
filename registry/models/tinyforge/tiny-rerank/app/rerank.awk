# tiny-rerank: scores each document by word overlap with the query (cosine of word sets).
# Input: the JSON body of POST /v1/rerank on stdin ({"query": ..., "documents": [...],
# "top_n": n}). Output: {"results": [{"index", "relevance_score"}], ...} best first.

function jstr(s, p,    out, c, n) {  # the JSON string that opens at s[p]; JEND is set past it
  out = ""; p++; n = length(s)
  while (p <= n) {
    c = substr(s, p, 1)
    if (c == "\"") { JEND = p + 1; return out }
    if (c == "\\") {
      p++; c = substr(s, p, 1)
      if (c == "n") c = "\n"; else if (c == "t") c = "\t"; else if (c == "r") c = "\r"
      else if (c == "u") { c = " "; p += 4 }
    }
    out = out c; p++
  }
  JEND = n + 1; return out
}

function skipws(s, p) {
  while (p <= length(s) && index(" \t\r\n,", substr(s, p, 1)) > 0) p++
  return p
}

function value_at(s, key,    p) {  # index of the value of "key", or 0
  p = index(s, "\"" key "\"")
  if (p == 0) return 0
  p += length(key) + 2
  p += index(substr(s, p), ":")
  return skipws(s, p)
}

function root(x,    r, i) {  # square root by Newton's method (busybox awk may lack sqrt)
  if (x <= 0) return 0
  r = (x > 1) ? x : 1
  for (i = 0; i < 40; i++) r = (r + x / r) / 2
  return r
}

function wordset(text, set,    n, i, w, words, count) {
  split("", set); count = 0
  n = split(tolower(text), words, /[^a-z0-9]+/)
  for (i = 1; i <= n; i++) {
    w = words[i]
    if (w != "" && !(w in set)) { set[w] = 1; count++ }
  }
  return count
}

{ body = body $0 "\n" }
END {
  p = value_at(body, "query")
  if (p == 0 || substr(body, p, 1) != "\"") {
    print "{\"error\":{\"message\":\"query must be a string\",\"type\":\"invalid_request_error\"}}"
    exit 1
  }
  query = jstr(body, p)
  n = 0; p = value_at(body, "documents")
  if (p > 0 && substr(body, p, 1) == "[") {
    p = skipws(body, p + 1)
    while (substr(body, p, 1) == "\"") { docs[n++] = jstr(body, p); p = skipws(body, JEND) }
  }
  if (n == 0) {
    print "{\"error\":{\"message\":\"documents must be a non-empty list of strings\",\"type\":\"invalid_request_error\"}}"
    exit 1
  }
  top = n; p = value_at(body, "top_n")
  if (p > 0 && substr(body, p) ~ /^[0-9]/) { top = substr(body, p) + 0; if (top < 1 || top > n) top = n }
  qn = wordset(query, q)
  tokens = qn
  for (i = 0; i < n; i++) {
    dn = wordset(docs[i], d); tokens += dn; common = 0
    for (w in d) if (w in q) common++
    score[i] = (qn && dn) ? common / root(qn * dn) : 0
    order[i] = i
  }
  for (i = 1; i < n; i++) {  # insertion sort: best first, ties by index
    k = order[i]; j = i - 1
    while (j >= 0 && score[order[j]] < score[k]) { order[j + 1] = order[j]; j-- }
    order[j + 1] = k
  }
  printf "{\"object\":\"list\",\"model\":\"tinyforge/tiny-rerank\",\"results\":["
  for (i = 0; i < top; i++)
    printf "%s{\"index\":%d,\"relevance_score\":%.6f}", (i ? "," : ""), order[i], score[order[i]]
  printf "],\"usage\":{\"total_tokens\":%d}}", tokens
}

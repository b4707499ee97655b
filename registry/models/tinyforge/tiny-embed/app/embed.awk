# tiny-embed: a 64-dimension hashed character-trigram embedding, in POSIX awk.
# Input: the JSON body of POST /v1/embeddings on stdin. Output: the JSON answer on stdout.
# Deterministic and dependency-free, so that the same text always maps to the same vector.

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

function root(x,    r, i) {  # square root by Newton's method (busybox awk may lack sqrt)
  if (x <= 0) return 0
  r = (x > 1) ? x : 1
  for (i = 0; i < 40; i++) r = (r + x / r) / 2
  return r
}

function embed(text, vec,    t, i, j, h, g, d, norm) {
  for (d = 0; d < DIMS; d++) vec[d] = 0
  t = " " tolower(text) " "
  for (i = 1; i + 2 <= length(t); i++) {
    g = substr(t, i, 3); h = 7
    for (j = 1; j <= 3; j++) h = (h * 31 + ORD[substr(g, j, 1)]) % 1000003
    d = h % DIMS
    vec[d] += (int(h / DIMS) % 2) ? -1 : 1
  }
  norm = 0
  for (d = 0; d < DIMS; d++) norm += vec[d] * vec[d]
  norm = (norm > 0) ? root(norm) : 1
  for (d = 0; d < DIMS; d++) vec[d] = vec[d] / norm
}

BEGIN { DIMS = 64; for (i = 1; i < 256; i++) ORD[sprintf("%c", i)] = i }
{ body = body $0 "\n" }
END {
  n = 0; p = index(body, "\"input\"")
  if (p > 0) {
    p = index(substr(body, p + 7), ":") + p + 7
    p = skipws(body, p)
    if (substr(body, p, 1) == "\"") { inputs[n++] = jstr(body, p) }
    else if (substr(body, p, 1) == "[") {
      p = skipws(body, p + 1)
      while (substr(body, p, 1) == "\"") { inputs[n++] = jstr(body, p); p = skipws(body, JEND) }
    }
  }
  if (n == 0) {
    print "{\"error\":{\"message\":\"input must be a string or a list of strings\",\"type\":\"invalid_request_error\"}}"
    exit 1
  }
  tokens = 0
  printf "{\"object\":\"list\",\"model\":\"tinyforge/tiny-embed\",\"data\":["
  for (k = 0; k < n; k++) {
    embed(inputs[k], vec)
    tokens += split(inputs[k], words, /[ \t\n]+/)
    printf "%s{\"object\":\"embedding\",\"index\":%d,\"embedding\":[", (k ? "," : ""), k
    for (d = 0; d < DIMS; d++) printf "%s%.6f", (d ? "," : ""), vec[d]
    printf "]}"
  }
  printf "],\"usage\":{\"prompt_tokens\":%d,\"total_tokens\":%d}}", tokens, tokens
}

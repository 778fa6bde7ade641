#include "model/mc.h"

#include <ctype.h>
#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/os.h"
#include "kernels/ops.h"
#include "model/llama.h"
#include "model/tokenizer.h"

/* Task files are read whole; the largest real one (HellaSwag validation,
 * all 10042 items) is about 8 MB. */
#define MC_FILE_MAX ((size_t)1 << 30)

/* Python's str.strip() whitespace, ASCII part. */
static bool py_space(unsigned char c)
{
	return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f);
}

static char *dup_n(const char *s, size_t n)
{
	char *d = malloc(n + 1);
	if (d) {
		memcpy(d, s, n);
		d[n] = '\0';
	}
	return d;
}

int qp_mc_preprocess(char **out, const char *text, size_t len, struct qp_err *err)
{
	*out = NULL;
	while (len && py_space((unsigned char)text[0])) {
		text++;
		len--;
	}
	while (len && py_space((unsigned char)text[len - 1]))
		len--;
	char *s = dup_n(text, len);
	if (!s)
		return qp_err_nomem(err);
	/* Each pass writes no more than it reads, so all run in place. */
	static const char title[] = " [title]";
	size_t w = 0;
	for (size_t r = 0; r < len;) {
		if (len - r >= sizeof(title) - 1 && !memcmp(s + r, title, sizeof(title) - 1)) {
			s[w++] = '.';
			s[w++] = ' ';
			r += sizeof(title) - 1;
		} else {
			s[w++] = s[r++];
		}
	}
	len = w;
	/* re.sub(r"\[.*?\]", ""): the nearest ']' not past a newline; an
	 * unmatched '[' stays */
	w = 0;
	for (size_t r = 0; r < len;) {
		if (s[r] == '[') {
			size_t j = r + 1;
			while (j < len && s[j] != ']' && s[j] != '\n')
				j++;
			if (j < len && s[j] == ']') {
				r = j + 1;
				continue;
			}
		}
		s[w++] = s[r++];
	}
	len = w;
	/* str.replace("  ", " "): non-overlapping, so three spaces leave two */
	w = 0;
	for (size_t r = 0; r < len;) {
		if (r + 1 < len && s[r] == ' ' && s[r + 1] == ' ') {
			s[w++] = ' ';
			r += 2;
		} else {
			s[w++] = s[r++];
		}
	}
	s[w] = '\0';
	*out = s;
	return 0;
}

/* ---- loading ---- */

static void item_free(struct qp_mc_item *it)
{
	free(it->context);
	for (size_t i = 0; it->choices && i < it->n_choices; i++)
		free(it->choices[i]);
	free(it->choices);
}

void qp_mc_task_free(struct qp_mc_task *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->n_items; i++)
		item_free(&t->items[i]);
	free(t->items);
	free(t->path);
	free(t);
}

/* The string field key of o, or NULL with err naming it. */
static const char *need_str(const json_t *o, const char *key, const char *what, const char *path,
                            int64_t line, struct qp_err *err)
{
	const json_t *v = json_object_get(o, key);
	if (!json_is_string(v)) {
		qp_err_set(err, QP_ECORRUPT, "%s:%lld: %s item has no string '%s'", path, (long long)line,
		           what, key);
		return NULL;
	}
	return json_string_value(v);
}

static int parse_label(int *out, const json_t *o, size_t n_choices, const char *path, int64_t line,
                       struct qp_err *err)
{
	const json_t *v = json_object_get(o, "label");
	long long l = -1;
	bool ok = false;
	if (json_is_integer(v)) {
		l = json_integer_value(v);
		ok = true;
	} else if (json_is_string(v)) {
		const char *s = json_string_value(v);
		ok = s[0] && strlen(s) < 10 && strspn(s, "0123456789") == strlen(s);
		if (ok)
			l = atoll(s);
	}
	if (!ok)
		return qp_err_set(err, QP_ECORRUPT, "%s:%lld: 'label' is not an integer", path, (long long)line);
	if (l < 0 || (size_t)l >= n_choices)
		return qp_err_set(err, QP_ECORRUPT, "%s:%lld: label %lld is out of range for %zu choices", path,
		                  (long long)line, l, n_choices);
	*out = (int)l;
	return 0;
}

/* Python's str.capitalize on ASCII: first letter upper, the rest lower. */
static void capitalize(char *s)
{
	for (size_t i = 0; s[i]; i++)
		s[i] = (char)(i ? tolower((unsigned char)s[i]) : toupper((unsigned char)s[i]));
}

static int hellaswag_item(struct qp_mc_item *it, const json_t *o, const char *path, struct qp_err *err)
{
	const json_t *ends = json_object_get(o, "endings");
	size_t n = json_array_size(ends);
	if (!json_is_array(ends) || n < 2)
		return qp_err_set(err, QP_ECORRUPT, "%s:%lld: hellaswag item needs 'endings', a list of at least 2 strings",
		                  path, (long long)it->line);
	int rc;
	if (json_object_get(o, "ctx_a")) {
		const char *label, *a, *b;
		if (!(label = need_str(o, "activity_label", "hellaswag", path, it->line, err)) ||
		    !(a = need_str(o, "ctx_a", "hellaswag", path, it->line, err)) ||
		    !(b = need_str(o, "ctx_b", "hellaswag", path, it->line, err)))
			return err->code;
		size_t la = strlen(label), na = strlen(a), nb = strlen(b);
		char *q = malloc(la + na + nb + 4);
		if (!q)
			return qp_err_nomem(err);
		char *cb = q + la + 2 + na + 1;
		memcpy(q, label, la);
		memcpy(q + la, ": ", 2);
		memcpy(q + la + 2, a, na);
		q[la + 2 + na] = ' ';
		memcpy(cb, b, nb + 1);
		capitalize(cb);
		rc = qp_mc_preprocess(&it->context, q, strlen(q), err);
		free(q);
	} else {
		const char *c = need_str(o, "ctx", "hellaswag", path, it->line, err);
		if (!c)
			return err->code;
		rc = qp_mc_preprocess(&it->context, c, strlen(c), err);
	}
	if (rc)
		return rc;
	if (!(it->choices = calloc(n, sizeof(char *))))
		return qp_err_nomem(err);
	it->n_choices = n;
	for (size_t i = 0; i < n; i++) {
		const json_t *e = json_array_get(ends, i);
		if (!json_is_string(e))
			return qp_err_set(err, QP_ECORRUPT, "%s:%lld: ending %zu is not a string", path,
			                  (long long)it->line, i);
		if ((rc = qp_mc_preprocess(&it->choices[i], json_string_value(e), json_string_length(e), err)))
			return rc;
	}
	return parse_label(&it->label, o, n, path, it->line, err);
}

static int piqa_item(struct qp_mc_item *it, const json_t *o, const char *path, struct qp_err *err)
{
	static const char pre[] = "Question: ", post[] = "\nAnswer:";
	const char *goal, *sol[2];
	if (!(goal = need_str(o, "goal", "piqa", path, it->line, err)) ||
	    !(sol[0] = need_str(o, "sol1", "piqa", path, it->line, err)) ||
	    !(sol[1] = need_str(o, "sol2", "piqa", path, it->line, err)))
		return err->code;
	size_t ng = strlen(goal);
	if (!(it->context = malloc(sizeof(pre) - 1 + ng + sizeof(post))) ||
	    !(it->choices = calloc(2, sizeof(char *))))
		return qp_err_nomem(err);
	memcpy(it->context, pre, sizeof(pre) - 1);
	memcpy(it->context + sizeof(pre) - 1, goal, ng);
	memcpy(it->context + sizeof(pre) - 1 + ng, post, sizeof(post));
	it->n_choices = 2;
	for (int i = 0; i < 2; i++)
		if (!(it->choices[i] = dup_n(sol[i], strlen(sol[i]))))
			return qp_err_nomem(err);
	return parse_label(&it->label, o, 2, path, it->line, err);
}

static int add_item(struct qp_mc_task *t, const char *line, size_t len, int64_t lineno,
                    struct qp_err *err)
{
	json_error_t je;
	json_t *o = json_loadb(line, len, 0, &je);
	if (!o)
		return qp_err_set(err, QP_ECORRUPT, "%s:%lld:%d: not JSON: %s", t->path, (long long)lineno,
		                  je.column, je.text);
	int rc = 0;
	if (!json_is_object(o)) {
		rc = qp_err_set(err, QP_ECORRUPT, "%s:%lld: an item must be a JSON object", t->path, (long long)lineno);
		goto out;
	}
	if (t->n_items == 0) {
		if (json_object_get(o, "goal")) {
			t->format = QP_MC_PIQA;
			t->name = "piqa";
		} else if (json_object_get(o, "endings")) {
			t->format = QP_MC_HELLASWAG;
			t->name = "hellaswag";
		} else {
			rc = qp_err_set(err, QP_EINVAL,
			                "%s:%lld: neither a hellaswag item (ctx, endings, label) nor a piqa item "
			                "(goal, sol1, sol2, label)", t->path, (long long)lineno);
			goto out;
		}
	}
	struct qp_mc_item *it = &t->items[t->n_items++];
	memset(it, 0, sizeof(*it));
	it->line = lineno;
	rc = t->format == QP_MC_PIQA ? piqa_item(it, o, t->path, err) : hellaswag_item(it, o, t->path, err);
out:
	json_decref(o);
	return rc;
}

int qp_mc_load(struct qp_mc_task **out, const char *path, int64_t limit, struct qp_err *err)
{
	*out = NULL;
	char *buf;
	size_t len;
	int rc = qp_os_read_file(&buf, &len, path, MC_FILE_MAX, err);
	if (rc)
		return rc;
	struct qp_mc_task *t = calloc(1, sizeof(*t));
	size_t lines = 1;
	for (size_t i = 0; i < len; i++)
		lines += buf[i] == '\n';
	if (!t || !(t->path = dup_n(path, strlen(path))) || !(t->items = calloc(lines, sizeof(*t->items)))) {
		rc = qp_err_nomem(err);
		goto out;
	}
	int64_t lineno = 0;
	for (size_t p = 0; p < len && (limit <= 0 || (int64_t)t->n_items < limit);) {
		const char *nl = memchr(buf + p, '\n', len - p);
		size_t end = nl ? (size_t)(nl - buf) : len;
		lineno++;
		size_t q = p;
		while (q < end && py_space((unsigned char)buf[q]))
			q++;
		if (q < end && (rc = add_item(t, buf + p, end - p, lineno, err)))
			goto out;
		p = end + 1;
	}
	if (t->n_items == 0)
		rc = qp_err_set(err, QP_EINVAL, "%s: no items", path);
out:
	free(buf);
	if (rc)
		qp_mc_task_free(t);
	else
		*out = t;
	return rc;
}

/* ---- scoring ---- */

/* Characters of a UTF-8 string as Python counts them (code points). */
static double n_chars(const char *s)
{
	double n = 0;
	for (; *s; s++)
		n += ((unsigned char)*s & 0xc0) != 0x80;
	return n;
}

struct scorer {
	struct qp_llama *m;
	const struct qp_tokenizer *tok;
	int64_t nv;
	float *logits;       /* cap_rows * nv */
	int64_t cap_rows;
	float *last;         /* logits of the context's last position */
	char *buf;           /* context + continuation text */
	size_t buf_cap;
};

static int ensure_rows(struct scorer *s, int64_t rows, struct qp_err *err)
{
	if (rows <= s->cap_rows)
		return 0;
	if ((uint64_t)rows > SIZE_MAX / sizeof(float) / (uint64_t)s->nv)
		return qp_err_nomem(err);
	float *p = realloc(s->logits, (size_t)rows * (size_t)s->nv * sizeof(float));
	if (!p)
		return qp_err_nomem(err);
	s->logits = p;
	s->cap_rows = rows;
	return 0;
}

/* BOS (when the model has one) + encode(text[len]) into *ids[*n]. */
static int encode_bos(const struct scorer *s, const char *text, size_t len, int32_t **ids, size_t *n,
                      struct qp_err *err)
{
	int32_t *raw;
	size_t nr;
	int rc = qp_tokenizer_encode(s->tok, text, len, false, &raw, &nr, err);
	if (rc)
		return rc;
	int32_t bos = qp_tokenizer_bos(s->tok);
	size_t off = bos >= 0;
	int32_t *o = malloc((nr + off + 1) * sizeof(int32_t));
	if (!o) {
		free(raw);
		return qp_err_nomem(err);
	}
	if (off)
		o[0] = bos;
	if (nr)
		memcpy(o + off, raw, nr * sizeof(int32_t));
	free(raw);
	*ids = o;
	*n = nr + off;
	return 0;
}

/* ll[i] and n_tok[i] for each choice of it. */
static int score_item(struct scorer *s, const struct qp_mc_item *it, double *ll, int64_t *n_tok,
                      struct qp_err *err)
{
	/* lm-eval moves the context's trailing whitespace into the continuation */
	size_t nc = strlen(it->context), keep = nc;
	while (keep && py_space((unsigned char)it->context[keep - 1]))
		keep--;
	int32_t *ctx = NULL, *whole = NULL;
	size_t n_ctx, n_whole;
	int rc = encode_bos(s, it->context, keep, &ctx, &n_ctx, err);
	if (rc)
		return rc;
	if (n_ctx == 0) {
		rc = qp_err_set(err, QP_EINVAL, "empty context and the model has no BOS token");
		goto out;
	}
	if ((rc = ensure_rows(s, (int64_t)n_ctx, err)) ||
	    (rc = qp_llama_eval(s->m, ctx, (int64_t)n_ctx, 0, s->logits, err)))
		goto out;
	memcpy(s->last, s->logits + (n_ctx - 1) * (size_t)s->nv, (size_t)s->nv * sizeof(float));
	for (size_t c = 0; c < it->n_choices; c++) {
		/* whole text: context + " " + choice, whatever whitespace moved */
		size_t nch = strlen(it->choices[c]), need = nc + 1 + nch + 1;
		if (need > s->buf_cap) {
			char *b = realloc(s->buf, need);
			if (!b) {
				rc = qp_err_nomem(err);
				goto out;
			}
			s->buf = b;
			s->buf_cap = need;
		}
		memcpy(s->buf, it->context, nc);
		s->buf[nc] = ' ';
		memcpy(s->buf + nc + 1, it->choices[c], nch + 1);
		free(whole);
		whole = NULL;
		if ((rc = encode_bos(s, s->buf, nc + 1 + nch, &whole, &n_whole, err)))
			goto out;
		if (n_whole <= n_ctx) {
			rc = qp_err_set(err, QP_EINVAL, "choice %zu has no tokens of its own", c);
			goto out;
		}
		/* the continuation is whole[n_ctx:], run after ctx's own tokens */
		const int32_t *cont = whole + n_ctx;
		int64_t k = (int64_t)(n_whole - n_ctx);
		double sum = -qp_ops_nll(s->last, s->nv, cont[0]);
		if (k > 1) {
			if ((rc = ensure_rows(s, k - 1, err)) ||
			    (rc = qp_llama_eval(s->m, cont, k - 1, (int64_t)n_ctx, s->logits, err)))
				goto out;
			for (int64_t j = 1; j < k; j++)
				sum -= qp_ops_nll(s->logits + (j - 1) * s->nv, s->nv, cont[j]);
		}
		ll[c] = sum;
		n_tok[c] = k;
	}
out:
	free(ctx);
	free(whole);
	return rc;
}

static double stderr_of(double p, int64_t n)
{
	return n > 1 ? sqrt(p * (1.0 - p) / (double)(n - 1)) : 0.0;
}

int qp_mc_run(struct qp_mc_result *out, struct qp_llama *m, const struct qp_tokenizer *tok,
              const struct qp_mc_task *t, qp_mc_item_fn each, void *arg, struct qp_err *err)
{
	memset(out, 0, sizeof(*out));
	struct scorer s = {.m = m, .tok = tok, .nv = qp_llama_hparams(m)->n_vocab};
	size_t max_choices = 0;
	for (size_t i = 0; i < t->n_items; i++)
		if (t->items[i].n_choices > max_choices)
			max_choices = t->items[i].n_choices;
	double *ll = malloc(max_choices * sizeof(double));
	int64_t *n_tok = malloc(max_choices * sizeof(int64_t));
	s.last = malloc((size_t)s.nv * sizeof(float));
	int rc = 0;
	if (!ll || !n_tok || !s.last) {
		rc = qp_err_nomem(err);
		goto out;
	}
	for (size_t i = 0; i < t->n_items; i++) {
		const struct qp_mc_item *it = &t->items[i];
		if ((rc = score_item(&s, it, ll, n_tok, err))) {
			qp_err_prefix(err, "%s:%lld", t->path, (long long)it->line);
			goto out;
		}
		int pred = 0, pred_norm = 0;
		for (size_t c = 1; c < it->n_choices; c++) {
			if (ll[c] > ll[pred])
				pred = (int)c;
			if (ll[c] / n_chars(it->choices[c]) > ll[pred_norm] / n_chars(it->choices[pred_norm]))
				pred_norm = (int)c;
		}
		out->n++;
		out->correct += pred == it->label;
		out->correct_norm += pred_norm == it->label;
		struct qp_mc_scored sc = {.index = i, .ll = ll, .n_tokens = n_tok, .pred = pred,
		                          .pred_norm = pred_norm};
		if (each && (rc = each(arg, t, &sc, err)))
			goto out;
	}
	out->acc = (double)out->correct / (double)out->n;
	out->acc_norm = (double)out->correct_norm / (double)out->n;
	out->acc_stderr = stderr_of(out->acc, out->n);
	out->acc_norm_stderr = stderr_of(out->acc_norm, out->n);
out:
	free(ll);
	free(n_tok);
	free(s.last);
	free(s.logits);
	free(s.buf);
	return rc;
}

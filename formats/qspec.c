/* Text form of quantization-method specs; see qspec.h. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/qspec.h"

static const char *const gran_names[] = {"tensor", "channel", "group"};

static int method_len(const char *text, size_t *len)
{
	const char *colon = strchr(text, ':');
	*len = colon ? (size_t)(colon - text) : strlen(text);
	char name[16];
	if (*len == 0 || *len >= sizeof(name))
		return -1;
	memcpy(name, text, *len);
	name[*len] = '\0';
	return qp_qmethod_from_name(name);
}

bool qp_qspec_is_method(const char *text)
{
	size_t len;
	return method_len(text, &len) >= 0;
}

static int parse_bool(const char *v, bool *out)
{
	if (!strcmp(v, "true") || !strcmp(v, "1") || !strcmp(v, "yes"))
		*out = true;
	else if (!strcmp(v, "false") || !strcmp(v, "0") || !strcmp(v, "no"))
		*out = false;
	else
		return -1;
	return 0;
}

static int parse_i64(const char *v, int64_t lo, int64_t hi, int64_t *out)
{
	char *end;
	errno = 0;
	long long x = strtoll(v, &end, 10);
	if (errno || end == v || *end || x < lo || x > hi)
		return -1;
	*out = x;
	return 0;
}

/* One KEY=VALUE or FLAG item; item is NUL-terminated and owned by the caller. */
static int parse_item(struct qp_qspec *s, char *item, const char *text, struct qp_err *err)
{
	char *eq = strchr(item, '=');
	const char *key = item, *v = eq ? eq + 1 : NULL;
	if (eq)
		*eq = '\0';
	int64_t x;
	if (!v) {
		if (!strcmp(key, "sym") || !strcmp(key, "asym")) {
			s->sym = key[0] == 's';
			return 0;
		}
		return qp_err_set(err, QP_EINVAL, "method '%s': item '%s' needs a value (KEY=VALUE)", text, key);
	}
	if (!strcmp(key, "bits")) {
		if (s->method != QP_QM_RTN && s->method != QP_QM_KMEANS)
			return qp_err_set(err, QP_EINVAL, "method '%s': %s has a fixed width; bits= is for rtn and kmeans",
			                  text, qp_qmethod_name(s->method));
		if (parse_i64(v, 1, 8, &x))
			goto bad;
		s->bits = (int)x;
	} else if (!strcmp(key, "group")) {
		if (parse_i64(v, 1, INT64_C(1) << 40, &x))
			goto bad;
		s->group = x;
		if (s->method != QP_QM_NF4)
			s->gran = QP_QG_GROUP;
	} else if (!strcmp(key, "gran")) {
		size_t i;
		for (i = 0; i < 3 && strcmp(v, gran_names[i]); i++)
			;
		if (i == 3)
			return qp_err_set(err, QP_EINVAL, "method '%s': gran=%s: expected tensor, channel or group",
			                  text, v);
		s->gran = (enum qp_qgran)i;
	} else if (!strcmp(key, "sym")) {
		if (parse_bool(v, &s->sym))
			goto bad;
	} else if (!strcmp(key, "scale")) {
		if (strcmp(v, "f16") && strcmp(v, "f32"))
			return qp_err_set(err, QP_EINVAL, "method '%s': scale=%s: expected f16 or f32", text, v);
		s->scale_f16 = !strcmp(v, "f16");
	} else if (!strcmp(key, "rule")) {
		if (strcmp(v, "threshold") && strcmp(v, "absmean"))
			return qp_err_set(err, QP_EINVAL, "method '%s': rule=%s: expected threshold or absmean", text, v);
		s->rule = !strcmp(v, "absmean") ? QP_TERN_ABSMEAN : QP_TERN_THRESHOLD;
	} else if (!strcmp(key, "threshold")) {
		char *end;
		double d = strtod(v, &end);
		if (end == v || *end || !(d >= 0 && d <= 10))
			goto bad;
		s->threshold = (float)d;
	} else if (!strcmp(key, "format")) {
		if (strcmp(v, "e4m3") && strcmp(v, "e5m2"))
			return qp_err_set(err, QP_EINVAL, "method '%s': format=%s: expected e4m3 or e5m2", text, v);
		s->fp8 = !strcmp(v, "e5m2") ? QP_FP8_E5M2 : QP_FP8_E4M3;
	} else if (!strcmp(key, "dq")) {
		if (parse_bool(v, &s->double_quant))
			goto bad;
	} else if (!strcmp(key, "channel_scale")) {
		if (parse_bool(v, &s->channel_scale))
			goto bad;
	} else if (!strcmp(key, "seed")) {
		if (parse_i64(v, 0, INT64_MAX, &x))
			goto bad;
		s->seed = (uint64_t)x;
	} else if (!strcmp(key, "iters")) {
		if (parse_i64(v, 0, 100000, &x))
			goto bad;
		s->iters = (int)x;
	} else {
		return qp_err_set(err, QP_EINVAL,
		                  "method '%s': unknown key '%s' (bits, group, gran, sym, asym, scale, rule, threshold, format, dq, channel_scale, seed, iters)",
		                  text, key);
	}
	return 0;
bad:
	return qp_err_set(err, QP_EINVAL, "method '%s': bad value '%s' for %s", text, v, key);
}

int qp_qspec_parse(struct qp_qspec *s, const char *text, struct qp_err *err)
{
	size_t len;
	int m = method_len(text, &len);
	if (m < 0)
		return qp_err_set(err, QP_EINVAL, "'%.*s' is not a method (rtn, binary, ternary, nf4, fp8, kmeans)",
		                  (int)(len ? len : strlen(text)), text);
	qp_qspec_default(s, (enum qp_qmethod)m);
	if (!text[len])
		return 0;
	char *rest = strdup(text + len + 1);
	if (!rest)
		return qp_err_nomem(err);
	int rc = 0;
	char *save = NULL;
	for (char *item = strtok_r(rest, ":", &save); item && !rc; item = strtok_r(NULL, ":", &save))
		rc = parse_item(s, item, text, err);
	free(rest);
	return rc;
}

int qp_qspec_format(const struct qp_qspec *s, char *buf, size_t n)
{
	const char *name = qp_qmethod_name(s->method);
	const char *g = gran_names[s->gran];
	switch (s->method) {
	case QP_QM_RTN:
		if (s->gran == QP_QG_GROUP)
			return snprintf(buf, n, "%s:bits=%d:group=%lld:%s:scale=%s", name, s->bits, (long long)s->group,
			                s->sym ? "sym" : "asym", s->scale_f16 ? "f16" : "f32");
		return snprintf(buf, n, "%s:bits=%d:gran=%s:%s:scale=%s", name, s->bits, g, s->sym ? "sym" : "asym",
		                s->scale_f16 ? "f16" : "f32");
	case QP_QM_BINARY:
	case QP_QM_TERNARY: {
		char rule[48] = "";
		if (s->method == QP_QM_TERNARY) {
			if (s->rule == QP_TERN_ABSMEAN)
				snprintf(rule, sizeof(rule), ":rule=absmean");
			else
				snprintf(rule, sizeof(rule), ":rule=threshold:threshold=%g", (double)s->threshold);
		}
		if (s->gran == QP_QG_GROUP)
			return snprintf(buf, n, "%s:group=%lld%s:scale=%s", name, (long long)s->group, rule,
			                s->scale_f16 ? "f16" : "f32");
		return snprintf(buf, n, "%s:gran=%s%s:scale=%s", name, g, rule, s->scale_f16 ? "f16" : "f32");
	}
	case QP_QM_NF4:
		return snprintf(buf, n, "%s:group=%lld:dq=%s", name, (long long)s->group,
		                s->double_quant ? "true" : "false");
	case QP_QM_FP8:
		return snprintf(buf, n, "%s:format=%s:gran=%s", name, s->fp8 == QP_FP8_E5M2 ? "e5m2" : "e4m3", g);
	case QP_QM_KMEANS:
		if (s->gran == QP_QG_GROUP)
			return snprintf(buf, n, "%s:bits=%d:group=%lld:channel_scale=%s:seed=%llu:iters=%d", name, s->bits,
			                (long long)s->group, s->channel_scale ? "true" : "false",
			                (unsigned long long)s->seed, s->iters);
		return snprintf(buf, n, "%s:bits=%d:gran=tensor:channel_scale=%s:seed=%llu:iters=%d", name, s->bits,
		                s->channel_scale ? "true" : "false", (unsigned long long)s->seed, s->iters);
	}
	return snprintf(buf, n, "%s", name);
}

/* report.svg: a chart of a report table, written as SVG text.
 *
 * 860 x 520 user units: the plot on the left, a legend on the right, the
 * title above, the axis labels with units (qp_metric_label) and the
 * setting below. A scatter puts one filled point per row at (x, y);
 * published values are hollow points of the same colour, joined to ours by
 * a dashed line. Bars show y per row, published values as an outlined bar
 * beside ours. Axes are linear, with round ticks (1, 2, 5 x 10^k). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stages/report/sbuf.h"
#include "stages/report/table.h"

#define W 860.0
#define H 520.0
#define PL 90.0   /* plot left */
#define PR 640.0  /* plot right */
#define PT 60.0   /* plot top */
#define PB 430.0  /* plot bottom */

static const char *const palette[] = {
	"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
	"#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
};
#define N_PALETTE (sizeof(palette) / sizeof(palette[0]))

struct axis {
	double lo, hi, step;
};

/* Round range [lo, hi] out to ticks 1, 2 or 5 x 10^k apart, about 5 of them. */
static void nice_axis(struct axis *a, double lo, double hi, int from_zero)
{
	if (from_zero && lo > 0)
		lo = 0;
	if (!(hi > lo)) {
		double pad = fabs(lo) > 0 ? fabs(lo) * 0.1 : 1.0;
		lo -= pad;
		hi += pad;
	} else if (!from_zero) {
		double pad = (hi - lo) * 0.08;
		lo -= pad;
		hi += pad;
	}
	double raw = (hi - lo) / 5.0;
	double mag = pow(10.0, floor(log10(raw)));
	double f = raw / mag;
	double step = (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * mag;
	a->lo = floor(lo / step) * step;
	a->hi = ceil(hi / step) * step;
	a->step = step;
}

static double sx(const struct axis *a, double v)
{
	return PL + (v - a->lo) / (a->hi - a->lo) * (PR - PL);
}

static double sy(const struct axis *a, double v)
{
	return PB - (v - a->lo) / (a->hi - a->lo) * (PB - PT);
}

static void tick_text(char *buf, size_t n, double v, double step)
{
	if (fabs(v) < step * 1e-6)
		v = 0;
	snprintf(buf, n, "%.6g", v);
}

static int number(const json_t *obj, const char *key, double *out)
{
	const json_t *v = json_object_get(obj, key);
	if (!json_is_number(v))
		return 0;
	*out = json_number_value(v);
	return isfinite(*out);
}

static void text_at(struct qp_sbuf *b, double x, double y, const char *anchor, int size,
                    const char *extra, const char *s)
{
	qp_sbuf_printf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"%s\" font-size=\"%d\"%s%s>", x, y,
	               anchor, size, extra[0] ? " " : "", extra);
	qp_sbuf_xml(b, s);
	qp_sbuf_printf(b, "</text>\n");
}

static void y_axis(struct qp_sbuf *b, const struct axis *ay, const char *label)
{
	char tt[64];
	for (double v = ay->lo; v <= ay->hi + ay->step * 0.5; v += ay->step) {
		double y = sy(ay, v);
		qp_sbuf_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e0e0e0\"/>\n",
		               PL, y, PR, y);
		tick_text(tt, sizeof(tt), v, ay->step);
		text_at(b, PL - 8, y + 4, "end", 12, "", tt);
	}
	qp_sbuf_printf(b, "<text x=\"24\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"14\" "
	               "transform=\"rotate(-90 24 %.1f)\">", (PT + PB) / 2, (PT + PB) / 2);
	qp_sbuf_xml(b, label);
	qp_sbuf_printf(b, "</text>\n");
}

static void frame(struct qp_sbuf *b)
{
	qp_sbuf_printf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" "
	               "stroke=\"#333\"/>\n", PL, PT, PR - PL, PB - PT);
}

static void legend_entry(struct qp_sbuf *b, int i, const char *color, const char *label, int hollow)
{
	double y = PT + 10 + 22.0 * i;
	qp_sbuf_printf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"6\" fill=\"%s\" stroke=\"%s\" "
	               "stroke-width=\"2\"/>\n", PR + 30, y, hollow ? "white" : color, color);
	text_at(b, PR + 44, y + 4, "start", 13, "", label);
}

static void caption(struct qp_sbuf *b, const json_t *t)
{
	const json_t *cap = json_object_get(t, "caption");
	char line[1024] = "";
	size_t n = 0;
	static const char *const keys[] = {"model", "text", "n_ctx", "threads", "host", "qpipe"};
	for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
		const json_t *v = json_object_get(cap, keys[k]);
		if (!v || n >= sizeof(line))
			continue;
		if (json_is_string(v))
			n += (size_t)snprintf(line + n, sizeof(line) - n, "%s%s %s", n ? "; " : "", keys[k],
			                      json_string_value(v));
		else if (json_is_integer(v))
			n += (size_t)snprintf(line + n, sizeof(line) - n, "%s%s %lld", n ? "; " : "", keys[k],
			                      (long long)json_integer_value(v));
	}
	if (line[0])
		text_at(b, 16, H - 14, "start", 11, "fill=\"#555\"", line);
	const char *src = json_string_value(json_object_get(json_object_get(t, "reference"), "source"));
	if (src && src[0]) {
		char s[600];
		snprintf(s, sizeof(s), "hollow: published (%s)", src);
		text_at(b, 16, H - 30, "start", 11, "fill=\"#555\"", s);
	}
}

static int scatter(struct qp_sbuf *b, const json_t *t, const char *xm, const char *ym,
                   struct qp_err *err)
{
	const json_t *rows = json_object_get(t, "rows");
	double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
	size_t i, points = 0;
	json_t *r;
	json_array_foreach((json_t *)rows, i, r) {
		const json_t *sets[2] = {json_object_get(r, "values"), json_object_get(r, "reference")};
		for (int s = 0; s < 2; s++) {
			double x, y;
			if (!number(sets[s], xm, &x) || !number(sets[s], ym, &y))
				continue;
			xlo = fmin(xlo, x), xhi = fmax(xhi, x), ylo = fmin(ylo, y), yhi = fmax(yhi, y);
			points++;
		}
	}
	if (!points)
		return qp_err_set(err, QP_EINVAL, "report.svg: no row has both '%s' and '%s' as numbers "
		                  "(are both in 'columns'?)", xm, ym);
	struct axis ax, ay;
	nice_axis(&ax, xlo, xhi, 0);
	nice_axis(&ay, ylo, yhi, 0);
	y_axis(b, &ay, qp_metric_label(ym));
	char tt[64];
	for (double v = ax.lo; v <= ax.hi + ax.step * 0.5; v += ax.step) {
		double x = sx(&ax, v);
		qp_sbuf_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e0e0e0\"/>\n",
		               x, PT, x, PB);
		tick_text(tt, sizeof(tt), v, ax.step);
		text_at(b, x, PB + 18, "middle", 12, "", tt);
	}
	text_at(b, (PL + PR) / 2, PB + 42, "middle", 14, "", qp_metric_label(xm));
	frame(b);
	int has_ref = 0, li = 0;
	json_array_foreach((json_t *)rows, i, r) {
		const char *color = palette[i % N_PALETTE];
		const char *label = json_string_value(json_object_get(r, "label"));
		double x, y, rx, ry;
		int ours = number(json_object_get(r, "values"), xm, &x) &&
		           number(json_object_get(r, "values"), ym, &y);
		int theirs = number(json_object_get(r, "reference"), xm, &rx) &&
		             number(json_object_get(r, "reference"), ym, &ry);
		if (!ours && !theirs)
			continue;
		if (ours && theirs)
			qp_sbuf_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
			               "stroke-dasharray=\"4 3\"/>\n", sx(&ax, x), sy(&ay, y), sx(&ax, rx),
			               sy(&ay, ry), color);
		if (theirs) {
			has_ref = 1;
			qp_sbuf_printf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"6\" fill=\"white\" stroke=\"%s\" "
			               "stroke-width=\"2\"><title>", sx(&ax, rx), sy(&ay, ry), color);
			qp_sbuf_xml(b, label);
			qp_sbuf_printf(b, " (published)</title></circle>\n");
			if (!ours)
				text_at(b, sx(&ax, rx) + 9, sy(&ay, ry) - 7, "start", 11, "fill=\"#333\"", label);
		}
		if (ours) {
			qp_sbuf_printf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"6\" fill=\"%s\"><title>",
			               sx(&ax, x), sy(&ay, y), color);
			qp_sbuf_xml(b, label);
			qp_sbuf_printf(b, "</title></circle>\n");
			text_at(b, sx(&ax, x) + 9, sy(&ay, y) - 7, "start", 11, "fill=\"#333\"", label);
		}
		legend_entry(b, li++, color, label, !ours);
	}
	if (has_ref) {
		legend_entry(b, li + 1, "#333", "ours", 0);
		legend_entry(b, li + 2, "#333", "published", 1);
	}
	return 0;
}

static int bars(struct qp_sbuf *b, const json_t *t, const char *ym, struct qp_err *err)
{
	const json_t *rows = json_object_get(t, "rows");
	size_t n = json_array_size(rows), i, shown = 0;
	double lo = 0, hi = -INFINITY;
	json_t *r;
	int has_ref = 0;
	json_array_foreach((json_t *)rows, i, r) {
		double v;
		int any = 0;
		if (number(json_object_get(r, "values"), ym, &v))
			lo = fmin(lo, v), hi = fmax(hi, v), any = 1;
		if (number(json_object_get(r, "reference"), ym, &v))
			lo = fmin(lo, v), hi = fmax(hi, v), any = 1, has_ref = 1;
		shown += any;
	}
	if (!shown)
		return qp_err_set(err, QP_EINVAL, "report.svg: no row has '%s' as a number (is it in "
		                  "'columns'?)", ym);
	struct axis ay;
	nice_axis(&ay, lo, hi, 1);
	y_axis(b, &ay, qp_metric_label(ym));
	frame(b);
	double slot = (PR - PL) / (double)n;
	double bw = slot * (has_ref ? 0.36 : 0.6);
	json_array_foreach((json_t *)rows, i, r) {
		const char *color = palette[i % N_PALETTE];
		const char *label = json_string_value(json_object_get(r, "label"));
		double x0 = PL + slot * (double)i + slot * (has_ref ? 0.12 : 0.2), v;
		double zero = sy(&ay, 0);
		if (number(json_object_get(r, "values"), ym, &v)) {
			double y = sy(&ay, v);
			qp_sbuf_printf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
			               "fill=\"%s\"><title>", x0, fmin(y, zero), bw, fabs(zero - y), color);
			qp_sbuf_xml(b, label);
			qp_sbuf_printf(b, "</title></rect>\n");
		}
		if (number(json_object_get(r, "reference"), ym, &v)) {
			double y = sy(&ay, v);
			qp_sbuf_printf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
			               "fill=\"white\" stroke=\"%s\" stroke-width=\"2\"><title>",
			               x0 + bw, fmin(y, zero), bw, fabs(zero - y), color);
			qp_sbuf_xml(b, label);
			qp_sbuf_printf(b, " (published)</title></rect>\n");
		}
		double cx = PL + slot * ((double)i + 0.5);
		qp_sbuf_printf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" font-size=\"12\" "
		               "transform=\"rotate(-30 %.1f %.1f)\">", cx, PB + 16, cx, PB + 16);
		qp_sbuf_xml(b, label);
		qp_sbuf_printf(b, "</text>\n");
		legend_entry(b, (int)i, color, label, 0);
	}
	if (has_ref) {
		legend_entry(b, (int)n + 1, "#333", "ours (filled)", 0);
		legend_entry(b, (int)n + 2, "#333", "published (outlined)", 1);
	}
	return 0;
}

int qp_table_svg(const json_t *t, const char *chart, const char *x, const char *y, char **out,
                 size_t *len, struct qp_err *err)
{
	struct qp_sbuf b = {0};
	qp_sbuf_printf(&b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
	               "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
	               "viewBox=\"0 0 %.0f %.0f\" font-family=\"sans-serif\">\n"
	               "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n", W, H, W, H);
	const char *title = json_string_value(json_object_get(t, "title"));
	text_at(&b, W / 2, 30, "middle", 17, "font-weight=\"bold\"", title ? title : "report");
	int rc = !strcmp(chart, "bars") ? bars(&b, t, y, err) : scatter(&b, t, x, y, err);
	if (rc) {
		free(b.p);
		return rc;
	}
	caption(&b, t);
	qp_sbuf_printf(&b, "</svg>\n");
	return qp_sbuf_finish(&b, out, len, err);
}

/* metrics.file: numbers from a JSON file, published as a stage's metrics.
 *
 * For numbers measured elsewhere (a published run, another tool) and for
 * tests that need fixed metrics: the file holds a JSON object; with 'key'
 * the stage publishes the member of that name (an object), else the whole
 * object. Its members become the metrics the report stages read, exactly
 * as evaluate's: {"size_mb": 14.2, "ppl": 11.3, "text": "wiki.test.raw"}.
 * The file's content is part of the key, so editing it reruns what reads
 * it. */
#include "stages/stage.h"

static const struct qp_param_decl params[] = {
	{.name = "path", .type = QP_P_PATH, .doc = "JSON file: an object of metrics, or of such objects by key"},
	{.name = "key", .type = QP_P_STRING, .def = "",
	 .doc = "member of the file to publish (e.g. \"${matrix.type}\"); default: the whole object"},
	{0},
};

#define METRICS_FILE_MAX (16u << 20)

static int run(struct qp_stage_ctx *ctx, struct qp_err *err)
{
	const char *path = qp_ctx_param(ctx, "path")->s;
	const char *key = qp_ctx_param(ctx, "key")->s;
	json_error_t je;
	json_t *doc = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
	if (!doc)
		return qp_err_set(err, QP_EINVAL, "%s:%d:%d: %s", path, je.line, je.column, je.text);
	json_t *m = key[0] ? json_object_get(doc, key) : doc;
	int rc = 0;
	if (!json_is_object(doc))
		rc = qp_err_set(err, QP_EINVAL, "%s: must hold a JSON object", path);
	else if (!m)
		rc = qp_err_set(err, QP_EINVAL, "%s: no member '%s'", path, key);
	else if (!json_is_object(m))
		rc = qp_err_set(err, QP_EINVAL, "%s: member '%s' must be an object of metrics", path, key);
	else
		json_object_update(qp_ctx_metrics(ctx), m);
	json_decref(doc);
	return rc;
}

const struct qp_stage_kind qp_kind_metrics_file = {
	.name = "metrics.file",
	.version = 1,
	.summary = "metrics read from a JSON file (numbers measured elsewhere, or fixed ones for tests)",
	.params = params,
	.run = run,
};

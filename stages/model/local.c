/* model.local: a model folder in Hugging Face layout on local disk.
 *
 * The folder is not copied into the store: its files are recorded as
 * external outputs, and the key covers their content (the pipeline hashes
 * PATH parameters by content), so editing a file reruns what depends on it. */
#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "formats/hfconfig.h"
#include "formats/safetensors.h"
#include "stages/stage.h"

static const struct qp_param_decl params[] = {
	{.name = "path", .type = QP_P_PATH, .doc = "folder with config.json and *.safetensors"},
	{0},
};

static int run(struct qp_stage_ctx *ctx, struct qp_err *err)
{
	const char *dir = qp_ctx_param(ctx, "path")->s;
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/config.json", dir);
	struct qp_hf_config cfg;
	int rc = qp_hf_config_read(&cfg, path, err);
	if (rc)
		return rc;
	struct qp_st_model *m;
	if ((rc = qp_st_open(&m, dir, err)))
		return rc;
	int64_t nparams = 0;
	for (size_t i = 0; i < qp_st_count(m); i++)
		nparams += qp_st_at(m, i)->nelem;
	json_t *met = qp_ctx_metrics(ctx);
	json_object_set_new(met, "architecture", json_string(cfg.architecture));
	json_object_set_new(met, "n_params", json_integer(nparams));
	json_object_set_new(met, "n_tensors", json_integer((json_int_t)qp_st_count(m)));
	json_object_set_new(met, "path", json_string(dir));
	qp_st_close(m);

	DIR *d = opendir(dir);
	if (!d)
		return qp_err_set(err, QP_EIO, "%s: cannot open directory:", dir);
	struct dirent *e;
	while ((e = readdir(d)) && !rc) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		struct stat st;
		if (stat(path, &st) == 0 && S_ISREG(st.st_mode))
			rc = qp_ctx_add_external(ctx, e->d_name, path, err);
	}
	closedir(d);
	return rc;
}

const struct qp_stage_kind qp_kind_model_local = {
	.name = "model.local",
	.version = 1,
	.summary = "a local model folder in Hugging Face layout (config.json, safetensors, tokenizer)",
	.params = params,
	.run = run,
};

#include <string.h>

#include "stages/stage.h"

extern const struct qp_stage_kind qp_kind_model_local;
extern const struct qp_stage_kind qp_kind_hf_download;
extern const struct qp_stage_kind qp_kind_url_download;
extern const struct qp_stage_kind qp_kind_quantize;
extern const struct qp_stage_kind qp_kind_calibrate;
extern const struct qp_stage_kind qp_kind_export_gguf;
extern const struct qp_stage_kind qp_kind_export_hf;
extern const struct qp_stage_kind qp_kind_evaluate;
extern const struct qp_stage_kind qp_kind_evaluate_base;
extern const struct qp_stage_kind qp_kind_report_markdown;
extern const struct qp_stage_kind qp_kind_report_csv;
extern const struct qp_stage_kind qp_kind_report_json;
extern const struct qp_stage_kind qp_kind_report_svg;
extern const struct qp_stage_kind qp_kind_metrics_file;
extern const struct qp_stage_kind qp_kind_run;

const struct qp_stage_kind *const qp_stage_kinds[] = {
	&qp_kind_model_local,
	&qp_kind_hf_download,
	&qp_kind_url_download,
	&qp_kind_calibrate,
	&qp_kind_quantize,
	&qp_kind_export_gguf,
	&qp_kind_export_hf,
	&qp_kind_evaluate,
	&qp_kind_evaluate_base,
	&qp_kind_report_markdown,
	&qp_kind_report_csv,
	&qp_kind_report_json,
	&qp_kind_report_svg,
	&qp_kind_metrics_file,
	&qp_kind_run,
	NULL,
};

const struct qp_stage_kind *qp_stage_kind_find(const char *name)
{
	for (size_t i = 0; qp_stage_kinds[i]; i++)
		if (strcmp(qp_stage_kinds[i]->name, name) == 0)
			return qp_stage_kinds[i];
	return NULL;
}

const struct qp_param_decl *qp_stage_param_find(const struct qp_stage_kind *k, const char *name)
{
	for (size_t i = 0; k->params[i].name; i++)
		if (strcmp(k->params[i].name, name) == 0)
			return &k->params[i];
	return NULL;
}

#include "kernels/types.h"

#include <stdint.h>
#include <strings.h>

static const struct qp_type_traits traits[QP_TYPE_COUNT] = {
	[QP_TYPE_F32] = {"f32", 1, 4, false},
	[QP_TYPE_F16] = {"f16", 1, 2, false},
	[QP_TYPE_Q4_0] = {"q4_0", 32, 18, true},
	[QP_TYPE_Q4_1] = {"q4_1", 32, 20, true},
	[QP_TYPE_Q5_0] = {"q5_0", 32, 22, true},
	[QP_TYPE_Q5_1] = {"q5_1", 32, 24, true},
	[QP_TYPE_Q8_0] = {"q8_0", 32, 34, true},
	[QP_TYPE_Q8_1] = {"q8_1", 32, 36, true},
	[QP_TYPE_Q2_K] = {"q2_K", 256, 84, true},
	[QP_TYPE_Q3_K] = {"q3_K", 256, 110, true},
	[QP_TYPE_Q4_K] = {"q4_K", 256, 144, true},
	[QP_TYPE_Q5_K] = {"q5_K", 256, 176, true},
	[QP_TYPE_Q6_K] = {"q6_K", 256, 210, true},
	[QP_TYPE_Q8_K] = {"q8_K", 256, 292, true},
	[QP_TYPE_IQ2_XXS] = {"iq2_xxs", 256, 66, true},
	[QP_TYPE_IQ2_XS] = {"iq2_xs", 256, 74, true},
	[QP_TYPE_IQ3_XXS] = {"iq3_xxs", 256, 98, true},
	[QP_TYPE_IQ1_S] = {"iq1_s", 256, 50, true},
	[QP_TYPE_IQ4_NL] = {"iq4_nl", 32, 18, true},
	[QP_TYPE_IQ3_S] = {"iq3_s", 256, 110, true},
	[QP_TYPE_IQ2_S] = {"iq2_s", 256, 82, true},
	[QP_TYPE_IQ4_XS] = {"iq4_xs", 256, 136, true},
	[QP_TYPE_I8] = {"i8", 1, 1, false},
	[QP_TYPE_I16] = {"i16", 1, 2, false},
	[QP_TYPE_I32] = {"i32", 1, 4, false},
	[QP_TYPE_I64] = {"i64", 1, 8, false},
	[QP_TYPE_F64] = {"f64", 1, 8, false},
	[QP_TYPE_IQ1_M] = {"iq1_m", 256, 56, true},
	[QP_TYPE_BF16] = {"bf16", 1, 2, false},
	[QP_TYPE_TQ1_0] = {"tq1_0", 256, 54, true},
	[QP_TYPE_TQ2_0] = {"tq2_0", 256, 66, true},
	[QP_TYPE_MXFP4] = {"mxfp4", 32, 17, true},
};

const struct qp_type_traits *qp_type_traits(int t)
{
	if (t < 0 || t >= QP_TYPE_COUNT || traits[t].blck == 0)
		return NULL;
	return &traits[t];
}

int qp_type_from_name(const char *name)
{
	for (int t = 0; t < QP_TYPE_COUNT; t++)
		if (traits[t].name && strcasecmp(traits[t].name, name) == 0)
			return t;
	return -1;
}

int qp_type_row_size(int t, int64_t n, size_t *out)
{
	const struct qp_type_traits *tt = qp_type_traits(t);
	if (!tt || n < 0 || n % tt->blck != 0)
		return -1;
	uint64_t blocks = (uint64_t)(n / tt->blck);
	if (blocks > SIZE_MAX / tt->type_size)
		return -1;
	*out = (size_t)blocks * tt->type_size;
	return 0;
}

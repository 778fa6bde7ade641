"""Bad recipes fail with exit 3 and messages naming file:line:col; all of
a recipe's errors come out in one go; nothing runs."""
import os
import textwrap
import unittest

import qptest


class RecipeErrors(unittest.TestCase):
    def setUp(self):
        self.w = qptest.Workdir()
        self.model = qptest.model_dir("stories260K")

    def tearDown(self):
        self.w.cleanup()

    def check(self, text, *expected, code=3):
        path = self.w.write("r.yaml", textwrap.dedent(text).replace("MODEL", self.model))
        p = self.w.qpipe("plan", path, "--cache-dir", self.w.cache, check=code)
        for e in expected:
            self.assertIn(e.replace("FILE", path), p.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.w.cache, "actions", "00")))
        return p

    def test_unknown_key_in_stage_names_position_and_suggests(self):
        self.check("""\
            stages:
              m:
                uses: model.local
                wiht: { path: MODEL }
            """, "FILE:4:5: unknown key 'wiht' in stage (did you mean 'with'?)")

    def test_unknown_parameter_suggests_declared_name(self):
        self.check("""\
            stages:
              m:
                uses: model.local
                with: { paht: MODEL }
            """, "FILE:4:13: unknown parameter 'paht' for stage kind 'model.local' (did you mean 'path'?)")

    def test_unknown_stage_kind(self):
        self.check("""\
            stages:
              m:
                uses: model.lokal
            """, "FILE:3:11: unknown stage kind 'model.lokal' (did you mean 'model.local'?)")

    def test_wrong_type_names_parameter_and_value(self):
        self.check("""\
            stages:
              m: { uses: model.local, with: { path: MODEL } }
              q:
                uses: quantize
                with: { model: m, type: [q4_0] }
            """, "FILE:5:29: parameter 'type' of stage 'q' must be one of its choices, not a list")

    def test_unknown_enum_value_suggests(self):
        self.check("""\
            stages:
              m: { uses: model.local, with: { path: MODEL } }
              q: { uses: quantize, with: { model: m, type: Q4_0 } }
            """, "FILE:3:48: parameter 'type' of stage 'q': unknown value 'Q4_0' (did you mean 'q4_0'?)")

    def test_dangling_reference_and_cycle(self):
        self.check("""\
            stages:
              q: { uses: quantize, with: { model: mdl, type: q8_0 } }
              m: { uses: model.local, with: { path: MODEL } }
            """, "FILE:2:39: parameter 'model' of stage 'q' names unknown stage 'mdl'")
        self.check("""\
            stages:
              a: { uses: quantize, with: { model: b, type: q8_0 } }
              b: { uses: quantize, with: { model: a, type: q8_0 } }
            """, "dependency cycle: 'a' -> 'b' -> 'a'")

    def test_missing_required_parameter(self):
        self.check("""\
            stages:
              m: { uses: model.local }
            """, "FILE:2:6: stage 'm' needs parameter 'path'")

    def test_all_errors_reported_at_once(self):
        p = self.check("""\
            stages:
              m:
                uses: model.local
                wiht: {}
              q:
                uses: quantise
            """, "FILE:4:5: unknown key 'wiht'", "FILE:6:11: unknown stage kind 'quantise'")
        self.assertIn("2 error(s); nothing was run", p.stderr)

    def test_yaml_syntax_error_has_position(self):
        self.check("stages:\n  m: [unclosed\n", "FILE:3:1: did not find expected ',' or ']'")

    def test_aliases_are_refused(self):
        self.check("""\
            stages:
              m: &x { uses: model.local, with: { path: MODEL } }
              n: *x
            """, "FILE:2:6: YAML anchors are not allowed in recipes")

    def test_bad_set_overrides(self):
        path = self.w.write("r.yaml", "stages:\n  m: { uses: model.local, with: { path: %s } }\n" % self.model)
        p = self.w.qpipe("plan", path, "--cache-dir", self.w.cache, "--set", "mm.path=x",
                         "--set", "oops", check=3)
        self.assertIn("--set 'mm.path=x': the recipe has no stage 'mm'", p.stderr)
        self.assertIn("--set 'oops': expected NAME=VALUE or STAGE.PARAM=VALUE", p.stderr)

    def test_matrix_rules_that_match_nothing(self):
        self.check("""\
            stages:
              a:
                uses: run
                matrix: { x: [1, 2], exclude: [{x: 3}] }
                with: { cmd: "true" }
            """, "FILE:4:36: matrix exclude entry of stage 'a' matches no combination")

    def test_include_errors_name_the_included_file(self):
        self.w.write("base.yaml", "stages:\n  m: { uses: model.local, with: { paht: x } }\n")
        p = self.check("""\
            include: [base.yaml, missing.yaml]
            stages:
              q: { uses: quantize, with: { model: m, type: q8_0 } }
            """, "FILE:1:22: included file 'missing.yaml' does not exist")
        base = os.path.join(self.w.dir, "base.yaml")
        self.assertIn("%s:2:35: unknown parameter 'paht' for stage kind 'model.local' (did you mean "
                      "'path'?)" % base, p.stderr)
        self.check("include: r.yaml\nstages: {}\n", "FILE:1:10: 'r.yaml' includes itself")
        self.check("""\
            include: base.yaml
            stages:
              m: { uses: model.local, with: { path: MODEL } }
            """, "base.yaml:2:3: stage 'm' is defined again (first at FILE:3:3)")

    def test_control_characters_in_values_stay_on_one_line(self):
        p = self.check('stages:\n  m: { uses: model.local, with: { path: MODEL } }\n'
                       '  q: { uses: quantize, with: { model: m, type: "q4\\n0" } }\n',
                       "FILE:3:48: parameter 'type' of stage 'q': unknown value 'q4\\n0' (did you mean 'q4_0'?)")
        self.assertEqual(len(p.stderr.splitlines()), 2)

    def test_unknown_variable(self):
        self.check("""\
            stages:
              m: { uses: model.local, with: { path: "${nowhere}" } }
            """, "FILE:2:41: unknown variable 'nowhere' in '${nowhere}'")


if __name__ == "__main__":
    qptest.main()

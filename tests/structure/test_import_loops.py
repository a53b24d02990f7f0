#!/usr/bin/env python3
"""The import-loop check finds loops put into a small tree and passes the same tree without.

    python3 tests/structure/test_import_loops.py
"""

import os
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
CHECK = os.path.join(HERE, "import_loops.py")


def tree(files):
    root = tempfile.mkdtemp(prefix="import-loops-")
    for path, text in files.items():
        full = os.path.join(root, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "w", encoding="utf-8") as fh:
            fh.write(text)
    return root


def check(root):
    out = subprocess.run(
        [sys.executable, CHECK, root], capture_output=True, text=True, check=False
    )
    return out.returncode, out.stdout


ACYCLIC = {
    "lib.rs": "pub mod config;\npub mod vend;\npub mod web;\n",
    "config/mod.rs": "mod server;\npub use server::Server;\npub struct Settings;\n",
    "config/server.rs": "pub struct Server;\n",
    "vend/mod.rs": "pub mod scope;\npub mod policy;\n",
    "vend/scope.rs": "use super::policy;\nuse crate::config::{self, Settings};\n",
    "vend/policy.rs": "use crate::config::Settings;\n",
    "web/mod.rs": (
        "use crate::{config::Server, vend::{policy, scope::Scoper as S}};\n"
        "fn f() { crate::vend::scope::check(); }\n"
        "#[cfg(test)]\nmod tests { use crate::web::*; }\n"
    ),
}


class ImportLoops(unittest.TestCase):
    def test_a_tree_without_loops_passes(self):
        rc, out = check(tree(ACYCLIC))
        self.assertEqual(rc, 0, out)
        self.assertIn("none among 7 modules", out)

    def test_a_use_tree_loop_is_found_with_the_names_that_tie_it(self):
        files = dict(ACYCLIC)
        files["config/mod.rs"] += "use crate::vend::{scope::check, policy};\n"
        rc, out = check(tree(files))
        self.assertEqual(rc, 1, out)
        self.assertIn("import loop 1: config, vend::policy, vend::scope", out)
        self.assertIn("config -> vend::scope: check", out)

    def test_an_inline_path_loop_is_found(self):
        files = dict(ACYCLIC)
        files["vend/policy.rs"] += "fn g() -> crate::web::Page { todo!() }\n"
        files["web/mod.rs"] += "pub struct Page;\n"
        rc, out = check(tree(files))
        self.assertEqual(rc, 1, out)
        self.assertIn("vend::policy -> web: Page", out)

    def test_a_child_and_its_parent_using_each_other_loop(self):
        files = dict(ACYCLIC)
        files["config/server.rs"] += "use super::Settings;\n"
        rc, out = check(tree(files))
        self.assertEqual(rc, 1, out)
        self.assertIn("config -> config::server: Server", out)
        self.assertIn("config::server -> config: Settings", out)

    def test_comments_strings_and_test_code_tie_nothing(self):
        files = dict(ACYCLIC)
        files["config/mod.rs"] += (
            "// use crate::web::Page;\n"
            '/* crate::web */ const S: &str = "crate::web::Page";\n'
            "#[cfg(test)]\nmod tests { use crate::web::Page; }\n"
        )
        rc, out = check(tree(files))
        self.assertEqual(rc, 0, out)


if __name__ == "__main__":
    unittest.main()

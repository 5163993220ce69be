"""The module layout's rules: no import cycles, one home for the user-facing errors, base modules stay base."""
import ast
import glob
import os

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODULES = {os.path.basename(p)[:-3]: p for p in glob.glob(os.path.join(REPO_ROOT, "*.py"))}


def project_imports(name: str) -> set[str]:
    """Project modules `name` imports anywhere in the file (also inside functions: those cycles bite too)."""
    tree = ast.parse(open(MODULES[name]).read())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found & set(MODULES) - {name}


def test_the_project_modules_import_each_other_without_a_cycle():
    graph = {name: project_imports(name) for name in MODULES}
    done, on_path = set(), []

    def visit(name):
        if name in on_path:
            raise AssertionError("import cycle: " + " -> ".join(on_path[on_path.index(name):] + [name]))
        if name in done:
            return
        on_path.append(name)
        for dep in sorted(graph[name]):
            visit(dep)
        on_path.pop()
        done.add(name)
    for name in sorted(graph):
        visit(name)
    assert {"a3c", "learner", "checkpoints", "run_log", "envs"} <= set(graph)  # the layout is really there


def test_base_modules_import_nothing_above_them():
    assert project_imports("errors") == set()
    assert project_imports("hparams") == {"errors"}
    assert project_imports("tf_setup") == {"hparams"}
    assert project_imports("specs") == set() and project_imports("preprocessing") == set()
    assert project_imports("distributions") == {"specs"}
    assert project_imports("retro_games") == {"preprocessing"}
    base = {"errors", "hparams", "tf_setup", "specs", "distributions"}
    for name in ("a3c_math", "network", "optimizers", "batch_agents", "plot"):  # pure: no trainer, no files
        assert project_imports(name) <= base, (name, project_imports(name))
    assert "a3c" not in project_imports("a3c_test")  # evaluation does not go through the trainer
    # drives the command-line tools and reads its commands' budgets from hparams: never loads TensorFlow
    assert project_imports("reproduce") == {"plot", "hparams", "errors", "atari_suite"}
    assert project_imports("atari_suite") == set()  # reference figures: no trainer, no TensorFlow


def test_user_facing_errors_are_defined_in_errors_py_only():
    for name, path in MODULES.items():
        classes = {node.name for node in ast.walk(ast.parse(open(path).read())) if isinstance(node, ast.ClassDef)}
        if name != "errors":
            assert not classes & {"ConfigError", "RunError", "CheckpointError"}, name


def test_every_module_says_what_it_owns_and_must_not_do():
    for name in MODULES:
        doc = ast.get_docstring(ast.parse(open(MODULES[name]).read())) or ""
        assert "\nOwns: " in doc and "\nMust not" in doc, name

"""Loading a user's model file (`--model path.py:factory` / `package.module:factory`): every
failure is one line on stderr and exit code 1, naming the file, the line where Python gives
one, the factory, and the original error's type and message."""
import sys

from jaxviz import cli

NNX_MODEL = (
    "from flax import nnx\n"
    "class Lin(nnx.Module):\n"
    "    def __init__(self, rngs):\n"
    "        self.d = nnx.Linear(12, 3, rngs=rngs)\n"
    "    def __call__(self, x):\n"
    "        return self.d(x.reshape(x.shape[0], 7, -1))\n"  # line 6: a wrong reshape
)


def _train(capsys, tmp_path, spec: str) -> str:
    """Run `jaxviz train --model spec` in-process; assert exit 1 and one stderr line."""
    code = cli.main(["train", "--model", spec, "--out", str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 1, err
    assert err.startswith("jaxviz train: error: model ") and "\n" not in err, err
    assert "Traceback" not in err
    return err


def _write(tmp_path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_syntax_error_is_one_line_with_file_and_line(tmp_path, capsys):
    """A model file with a syntax error printed a 20-line traceback through registry.py."""
    path = _write(tmp_path, "syntax_bad.py", "from flax import nnx\n\ndef make(seed:\n    return 1\n")
    err = _train(capsys, tmp_path, f"{path}:make")
    assert f"{path}:3" in err and "SyntaxError" in err and ":make" in err


def test_name_error_at_import_is_one_line_with_file_and_line(tmp_path, capsys):
    """A NameError while importing the model file printed a traceback through registry.py."""
    path = _write(tmp_path, "name_bad.py", "import math\n\nscale = undefined_name * 2\n\n"
                                           "def make(seed):\n    return None\n")
    err = _train(capsys, tmp_path, f"{path}:make")
    assert f"{path}:3" in err and "NameError" in err and "undefined_name" in err
    assert ":make" in err


def test_name_error_in_a_module_spec_names_its_file(tmp_path, capsys, monkeypatch):
    """The same for `package.module:factory` from the current directory."""
    path = _write(tmp_path, "mod_name_bad_models.py", "x = 1\ny = missing_thing\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    err = _train(capsys, tmp_path, "mod_name_bad_models:make")
    assert f"{path}:2" in err and "NameError" in err and "mod_name_bad_models:make" in err
    sys.modules.pop("mod_name_bad_models", None)


def test_factory_that_raises_names_file_line_and_factory(tmp_path, capsys):
    """A factory that raised printed `error: boom inside my factory`, naming neither the
    file nor the factory."""
    path = _write(tmp_path, "boom_models.py", "def helper():\n"
                                              "    raise RuntimeError('boom inside my factory')\n"
                                              "\ndef make(seed):\n    return helper()\n")
    err = _train(capsys, tmp_path, f"{path}:make")
    assert f"{path}:2" in err and "factory 'make'" in err
    assert "RuntimeError: boom inside my factory" in err


def test_model_that_fails_on_its_first_call_names_the_line(tmp_path, capsys):
    """A model whose __call__ fails when the factory's model is first run."""
    path = _write(tmp_path, "call_bad_models.py", NNX_MODEL +
                  "def make(seed):\n    return Lin(nnx.Rngs(seed)), (2, 2, 3)\n")
    err = _train(capsys, tmp_path, f"{path}:make")
    assert f"{path}:6" in err and "factory 'make'" in err and "TypeError" in err


def test_missing_factory_names_file_and_factory(tmp_path, capsys):
    """A factory name the file does not define: the file, the name and what it defines."""
    path = _write(tmp_path, "no_factory_models.py", "def make(seed):\n    return None\n")
    err = _train(capsys, tmp_path, f"{path}:mkae")
    assert path in err and "'mkae'" in err and "['make']" in err


def test_missing_file_names_file_and_factory(tmp_path, capsys):
    """A model file that does not exist."""
    err = _train(capsys, tmp_path, f"{tmp_path}/nowhere_models.py:make")
    assert "nowhere_models.py" in err and ":make" in err and "does not exist" in err

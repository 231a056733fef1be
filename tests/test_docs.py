"""The documentation MindSpore's community reads: README_CN.md in step with README.md, and every
exported name documented in MindSpore's layout (its examples run as doctests: pytest.ini)."""
import inspect
import os
import re

import pytest

import ms_lars
from ms_lars import experimental

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read(name):
    with open(os.path.join(ROOT, name), encoding="utf-8") as f:
        return f.read()


def headings(text):
    """(level, ...) of every Markdown heading outside code blocks."""
    outside = re.sub(r"```.*?```", "", text, flags=re.S)
    return [len(m.group(1)) for m in re.finditer(r"^(#{1,6}) ", outside, re.M)]


def code_blocks(text):
    return re.findall(r"```[a-z]*\n(.*?)```", text, re.S)


def quick_start(text, title):
    section = text[text.index(f"## {title}"):]
    return code_blocks(section)[0]


def test_readme_cn_exists_and_links_both_ways():
    english, chinese = read("README.md"), read("README_CN.md")
    assert "(README_CN.md)" in english.split("\n## ")[0]
    assert "(README.md)" in chinese.split("\n## ")[0]


def test_readme_cn_keeps_the_same_sections_commands_code_and_tables():
    english, chinese = read("README.md"), read("README_CN.md")
    assert headings(chinese) == headings(english)
    assert quick_start(chinese, "快速开始") == quick_start(english, "Quick start")
    assert code_blocks(chinese) == code_blocks(english)
    # The same tables, row for row, and the same figures.
    table_rows = lambda text: [line.count("|") for line in text.splitlines() if line.startswith("|")]  # noqa: E731
    assert table_rows(chinese) == table_rows(english)
    figures = lambda text: re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)  # noqa: E731
    assert figures(chinese) == figures(english)


def test_readme_cn_uses_mindsporess_chinese_terms():
    chinese = read("README_CN.md")
    for term in ("优化器", "学习率", "权重衰减", "梯度", "信任系数", "信任比率", "裁剪", "静态图模式",
                 "动态图模式（PyNative）", "自定义算子", "示例训练脚本", "单独使用 `LARSUpdate` 原语"):
        assert term in chinese, term
    # 信任系数 is `coefficient` alone; the trust ratio is 信任比率. Clip is 裁剪, graph mode 静态图模式, and
    # the C++ kernels are 自定义算子 (beside "2 个 CPU 核", "CPU 内核" reads as CPU cores).
    for line in chinese.splitlines():
        if "信任系数" in line:
            assert re.search(r"信任系数[ ]?[0-9]|`coefficient`|coefficient=", line), line
    for wrong in ("截断", "CPU 内核", "C++ 内核", "主任务", "裸的", "裸算子"):
        assert wrong not in chinese, wrong
    assert not re.search(r"(?<!静态)(?<!动态)图模式", chinese)
    assert not re.search(r"(?<!信任)系数", chinese)          # a bare 系数 was the ratio too


# The optimizers and their telemetry; patch_mindspore, which computes nothing, has its own test below.
EXPORTED = [getattr(ms_lars, name) for name in ms_lars.__all__ if name not in ("__version__", "patch_mindspore")] + \
    [experimental.Lars, experimental.Lamb]
SECTIONS = ["Args:", "Inputs:", "Outputs:", "Raises:", "Supported Platforms:", "Examples:"]


@pytest.mark.parametrize("obj", EXPORTED, ids=lambda obj: obj.__name__)
def test_exported_names_have_mindsporess_docstring_sections(obj):
    doc = inspect.getdoc(obj)
    summary = doc.splitlines()[0]
    assert summary and summary.endswith((".", ":")), summary
    assert ".. math::" in doc
    assert re.search(r"arxiv\.org|\b(19|20)\d\d\b", doc), "the paper"
    positions = [doc.index(section) for section in SECTIONS]
    assert positions == sorted(positions), "MindSpore's order"
    assert "``Ascend`` ``GPU`` ``CPU``" in doc
    assert ">>> " in doc[doc.index("Examples:"):]
    # Args give defaults: every argument with a default says "Default:".
    parameters = inspect.signature(obj).parameters
    args = doc[doc.index("Args:"):doc.index("Inputs:")]
    for name, parameter in parameters.items():
        if parameter.default is not inspect.Parameter.empty:
            entry = re.search(rf"^( +){name} \(.*?(?=^\1\w+ \(|\Z)", args, re.S | re.M)
            assert entry and "Default:" in entry.group(0), name


def test_patch_mindspore_documents_what_it_replaces_and_its_handle():
    doc = inspect.getdoc(ms_lars.patch_mindspore)
    for binding in ("mindspore.nn.LARS", "mindspore.nn.Lamb", "mindspore.nn.optim.LARS", "mindspore.nn.optim.Lamb",
                    "mindspore.boost.base", "mindspore.boost.grad_freeze", "mindformers"):
        assert binding in doc, binding
    assert "Returns:" in doc and "undo()" in doc and ">>> " in doc[doc.index("Examples:"):]
    for readme, title in (("README.md", "## Existing code"), ("README_CN.md", "## 已有代码")):
        assert title in read(readme) and "python -m ms_lars.patch" in read(readme)


def test_measured_speed_figures_live_in_docs_speed_md_alone():
    speed = read("docs/speed.md")
    for readme, title, end in (("README.md", "## Speed", "### Kernel launches on Ascend"),
                               ("README_CN.md", "## 速度", "### Ascend 上的内核启动次数")):
        text = read(readme)
        section = text[text.index(title):text.index(end)]
        # Every ratio and range README quotes there is one docs/speed.md gives.
        quoted = set(re.findall(r"\b\d\.\d\d(?:-\d\.\d\d)?\b", section))
        assert quoted and all(figure in speed for figure in quoted), sorted(f for f in quoted if f not in speed)
        assert "| 76.0 |" not in text and "0.94-1.03" not in text     # the old table and record cost, copied
    # Nothing else keeps a copy: no millisecond or ratio figures in the code's docstrings or the CHANGELOG.
    for name in ("ms_lars/_graph_call.py", "ms_lars/lamb.py", "ms_lars/lars.py", "CHANGELOG.md"):
        assert not re.search(r"\d\.\d+ ms|\b0\.\d\d-0\.\d\dx|\b0\.\d\dx `nn\.", read(name)), name


def test_the_formulas_are_the_projects_own_document_and_nothing_cites_a_spec():
    # What users and maintainers are pointed to ships with the project: docs/formulas.md, not a
    # "SPEC" kept outside it.
    formulas = read("docs/formulas.md")
    assert "## LARS" in formulas and "## Lamb" in formulas and "Ascend" in formulas
    names = ["README.md", "README_CN.md", "CHANGELOG.md", "setup.py"]
    for folder, suffix in (("docs", ".md"), ("ms_lars", ".py"), ("ms_lars/conformance", ".py"), ("scripts", ".py")):
        names += [f"{folder}/{name}" for name in sorted(os.listdir(os.path.join(ROOT, folder))) if name.endswith(suffix)]
    citing = [name for name in names if re.search(r"\bSPEC\b", read(name))]
    assert not citing, citing
    assert "docs/formulas.md" in read("README.md") and "docs/formulas.md" in read("README_CN.md")

"""The shape of the code in figures, for reviewing a refactor: the largest modules, the
largest constructors (`__init__` parameters or dataclass init fields), the most methods per
class, `Any` in the node signatures under graph/nodes, and fixed sleeps of 0.5 s or more in
tests. Reads the files as text (ast), imports nothing of ours; run from the repository
root: `python scripts/code_shape.py [TOP]`."""
from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGES = ("agent", "graph", "guards", "knowledge", "evals", "benchmarks", "scripts")


def sources(*roots: str) -> list[Path]:
    return sorted(p for r in roots for p in Path(r).rglob("*.py") if ".venv" not in p.parts)


def init_params(cls: ast.ClassDef) -> int | None:
    """Parameters of `__init__`, or the init fields of a dataclass (not init=False)."""
    for item in cls.body:
        if isinstance(item, ast.FunctionDef) and item.name == "__init__":
            a = item.args
            return len(a.posonlyargs) + len(a.args) - 1 + len(a.kwonlyargs)
    if any("dataclass" in ast.unparse(d) for d in cls.decorator_list):
        return sum(1 for item in cls.body if isinstance(item, ast.AnnAssign)
                   and "ClassVar" not in ast.unparse(item.annotation)
                   and "init=False" not in ast.unparse(item.value or ast.Constant(None)))
    return None


def any_count(node: ast.AST | None) -> int:
    if node is None:
        return 0
    return sum(1 for n in ast.walk(node)
               if (isinstance(n, ast.Name) and n.id == "Any")
               or (isinstance(n, ast.Attribute) and n.attr == "Any")
               or (isinstance(n, ast.Constant) and isinstance(n.value, str) and "Any" in n.value))


def modules(files: list[Path], top: int) -> None:
    sizes = sorted(((len(p.read_text().splitlines()), str(p)) for p in files), reverse=True)
    print("largest modules:")
    for n, p in sizes[:top]:
        print(f"  {n:5d}  {p}")
    print(f"  modules over 500 lines: {sum(1 for n, _ in sizes if n > 500)}")


def classes(files: list[Path], top: int) -> None:
    ctors, methods = [], []
    for p in files:
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.ClassDef):
                n = init_params(node)
                if n is not None:
                    ctors.append((n, f"{p}:{node.name}"))
                m = sum(isinstance(i, (ast.FunctionDef, ast.AsyncFunctionDef)) for i in node.body)
                methods.append((m, f"{p}:{node.name}"))
    print("largest constructors (__init__ parameters or dataclass init fields):")
    for n, c in sorted(ctors, reverse=True)[:top]:
        print(f"  {n:5d}  {c}")
    print("most methods per class:")
    for n, c in sorted(methods, reverse=True)[:5]:
        print(f"  {n:5d}  {c}")


def node_signatures() -> None:
    count = 0
    for p in sources("graph/nodes"):
        for fn in ast.walk(ast.parse(p.read_text())):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                args = fn.args.posonlyargs + fn.args.args + fn.args.kwonlyargs
                count += sum(any_count(a.annotation) for a in args) + any_count(fn.returns)
    print(f"`Any` in function signatures under graph/nodes: {count}")


def fixed_sleeps() -> None:
    sleeps = []
    for p in sources("tests"):
        for call in ast.walk(ast.parse(p.read_text())):
            if (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                    and call.func.attr == "sleep" and call.args
                    and isinstance(call.args[0], ast.Constant)
                    and isinstance(call.args[0].value, (int, float))
                    and call.args[0].value >= 0.5):
                sleeps.append(f"{p}:{call.lineno} sleep({call.args[0].value})")
    print(f"fixed sleeps of 0.5 s or more in tests: {len(sleeps)}")
    for line in sleeps:
        print(f"  {line}")


def main() -> None:
    top = int(sys.argv[1]) if len(sys.argv) > 1 else 8
    files = sources(*PACKAGES)
    modules(files, top)
    classes(files, top)
    node_signatures()
    fixed_sleeps()


if __name__ == "__main__":
    main()

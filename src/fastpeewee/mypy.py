"""A mypy plugin for the two things mypy cannot see on its own: ``db.Model`` and generated schemas.

Enable it in ``pyproject.toml`` (or ``plugins = fastpeewee.mypy`` in ``mypy.ini``)::

    [tool.mypy]
    plugins = ["fastpeewee.mypy"]

Then, with no ``# type: ignore``::

    class User(db.Model): ...                          # a subclass of AsyncModel
    UserRead = to_pydantic(User, variant="read")       # a class: valid as an annotation
    UserCreate, UserUpdate, UserRead = schemas(User)   # three classes

Why a plugin: mypy resolves base classes and annotations while it builds its symbol
tables, before it knows the type of any variable. ``db.Model`` (an attribute of an
instance) and ``UserRead`` (a variable holding a class) are then errors, and no
plugin hook is consulted first: mypy only resolves a dotted base through a module,
a class, an alias or an ``Any`` variable. So, in the tree mypy parsed (never in
the running code), the plugin names such a base through a hidden ``Any`` variable
(``__fastpeewee_bases__``); resolving it calls this plugin, which answers
``AsyncModel`` when the variable is a fastpeewee database and, otherwise,
exactly what mypy would have answered for the original ``X.Model``.
``to_pydantic`` and ``schemas`` assignments become classes (subclasses of the
``base_model`` argument, else ``pydantic.BaseModel``); fields declared on
``base_model`` keep their types, generated fields read as ``Any``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any

from mypy.nodes import (
    ARG_POS,
    ARG_STAR2,
    GDEF,
    Argument,
    AssignmentStmt,
    Block,
    CallExpr,
    ClassDef,
    Decorator,
    Expression,
    ExpressionStmt,
    ForStmt,
    FuncDef,
    IfStmt,
    Import,
    ImportFrom,
    MemberExpr,
    MypyFile,
    NameExpr,
    RefExpr,
    Statement,
    StrExpr,
    SymbolTableNode,
    TempNode,
    TryStmt,
    TupleExpr,
    TypeInfo,
    Var,
    WhileStmt,
    WithStmt,
)
from mypy.plugin import (
    AnalyzeTypeContext,
    ClassDefContext,
    DynamicClassDefContext,
    Plugin,
    ReportConfigContext,
)
from mypy.plugins.common import add_attribute_to_class, add_method_to_class
from mypy.typeanal import TypeAnalyser
from mypy.types import (
    AnyType,
    Instance,
    NoneType,
    Type,
    TypeOfAny,
    TypeType,
    UnboundType,
    UnionType,
    get_proper_type,
)

__all__ = ["FastpeeweePlugin", "plugin"]

DATABASE = "fastpeewee.database.AsyncDatabase"
ASYNC_MODEL = "fastpeewee.model.AsyncModel"
BASE_MODEL = "pydantic.main.BaseModel"
TO_PYDANTIC = "fastpeewee.schema.to_pydantic"
SCHEMAS = "fastpeewee.schema.schemas"
PEEWEE_MODEL = "peewee.Model"
AUTO_FIELDS = {"AutoField", "BigAutoField", "IdentityField", "PrimaryKeyField"}
PLUGIN = "fastpeewee"  # the key of the plugin's notes in a class's (cached) metadata
# The hidden module-level ``Any`` variable that rewritten bases are named through.
BASES = "__fastpeewee_bases__"
# Source that the plugin may rewrite: a dotted ``.Model`` base, schemas()/to_pydantic().
_REWRITTEN = re.compile(
    r"^\s*class\s+\w+\s*\([^)]*\w\.Model\b|\bschemas\s*\(|\bto_pydantic\s*\(", re.M
)


def plugin(version: str) -> type[Plugin]:
    """The entry point mypy calls (``plugins = ["fastpeewee.mypy"]``)."""
    return FastpeeweePlugin


class FastpeeweePlugin(Plugin):
    """Resolves ``X.Model`` bases and turns ``to_pydantic``/``schemas`` results into classes."""

    def __init__(self, options: object) -> None:
        super().__init__(options)  # type: ignore[arg-type]  # mypy passes its Options
        # Variables assigned a database, known before mypy infers their type.
        self._databases: set[Var] = set()
        # The calls of ``A, B, C = schemas(...)`` statements (``X = schemas(...)`` is a tuple).
        self._unpacked: set[int] = set()
        self._run = os.urandom(8).hex()  # tells this mypy run from the others

    def report_config_data(self, ctx: ReportConfigContext) -> Any:
        # The tree is prepared in get_additional_deps, which mypy calls for a
        # module it parses to find its imports, but not for a module whose
        # cache is valid and which it re-checks because an import changed: that
        # one would be checked unprepared. So a module with something to
        # prepare never has a valid cache: its data differs on every run.
        if ctx.path.endswith(".py") and os.sep + "site-packages" + os.sep not in ctx.path:
            try:
                with open(ctx.path, encoding="utf-8") as source:
                    if _REWRITTEN.search(source.read()):
                        return self._run
            except (OSError, UnicodeDecodeError):
                pass
        return None

    def get_additional_deps(self, file: MypyFile) -> list[tuple[int, str, int]]:
        # Called once per freshly parsed module, before its semantic analysis:
        # the one point where the tree can be prepared. It adds no dependency.
        _rewrite(file, self._unpacked)
        return []

    # mypy asks the plugins in turn and takes the first hook offered: offer one only
    # for what is ours, so the plugins listed after this one keep theirs.

    def get_base_class_hook(self, fullname: str) -> Callable[[ClassDefContext], None] | None:
        if f".{BASES}." in fullname:  # a rewritten ``X.Model`` base
            return _peewee_model
        sym = self.lookup_fully_qualified(fullname)
        if sym is not None and isinstance(sym.node, TypeInfo) and sym.node.has_base(PEEWEE_MODEL):
            return _peewee_model
        return None

    def get_type_analyze_hook(self, fullname: str) -> Callable[[AnalyzeTypeContext], Type] | None:
        if f".{BASES}." in fullname:
            return self._model_base
        return None

    def get_dynamic_class_hook(
        self, fullname: str
    ) -> Callable[[DynamicClassDefContext], None] | None:
        if fullname == TO_PYDANTIC:
            return _schema_class
        if fullname == SCHEMAS:
            return self._unpacked_schema
        sym = self.lookup_fully_qualified(fullname) if "." in fullname else None
        if sym is not None and _returns_database(sym.node):
            return self._remember_database
        return None

    def _unpacked_schema(self, ctx: DynamicClassDefContext) -> None:
        if id(ctx.call) in self._unpacked:
            _schema_class(ctx)

    def _remember_database(self, ctx: DynamicClassDefContext) -> None:
        """``db = AsyncSqliteDatabase(...)`` (or any call returning a database): note ``db``."""
        sym = ctx.api.lookup_qualified(ctx.name, ctx.call, suppress_errors=True)
        if sym is not None and isinstance(sym.node, Var):
            self._databases.add(sym.node)

    def _model_base(self, ctx: AnalyzeTypeContext) -> Type:
        """``X.Model`` as a base: ``AsyncModel`` if ``X`` is a database, else mypy's own answer."""
        name = ctx.type.name.split(".")[-2]
        analyser = ctx.api
        assert isinstance(analyser, TypeAnalyser)  # the only implementation of the interface
        sym = analyser.lookup_qualified(name, ctx.context, suppress_errors=True)
        if sym is not None and self._is_database(sym.node):
            model = analyser.api.lookup_fully_qualified_or_none(ASYNC_MODEL)
            if model is not None and isinstance(model.node, TypeInfo):
                return Instance(model.node, [])
        original = UnboundType(f"{name}.Model", line=ctx.type.line, column=ctx.type.column)
        return ctx.api.analyze_type(original)

    def _is_database(self, node: object) -> bool:
        if not isinstance(node, Var):
            return False
        if node.type is None:
            return node in self._databases
        return _is_database_type(node.type)


def _is_database_type(typ: Type | None) -> bool:
    proper = get_proper_type(typ)
    if isinstance(proper, UnionType):
        return all(_is_database_type(item) for item in proper.items)
    return isinstance(proper, Instance) and proper.type.has_base(DATABASE)


def _returns_database(node: object) -> bool:
    """A database class, or a function declared to return a database."""
    if isinstance(node, Decorator):
        node = node.func
    if isinstance(node, TypeInfo):
        return node.has_base(DATABASE)
    if isinstance(node, FuncDef) and node.type is not None:
        return _is_database_type(getattr(node.type, "ret_type", None))
    return False


# What peewee adds to every model class ------------------------------------------------------


def _peewee_model(ctx: ClassDefContext) -> None:
    """What peewee's metaclass adds: ``id`` (unless a key is declared), ``DoesNotExist``."""
    info = ctx.cls.info
    if not info.has_base(PEEWEE_MODEL) or info.fullname == PEEWEE_MODEL or PLUGIN in info.metadata:
        return
    declares_key = _declares_primary_key(ctx.cls) or any(
        base.metadata.get(PLUGIN, {}).get("primary_key", False) for base in info.mro[1:]
    )
    info.metadata[PLUGIN] = {"primary_key": declares_key}
    if not declares_key and info.get("id") is None:
        auto = ctx.api.named_type_or_none("peewee.AutoField", [ctx.api.named_type("builtins.int")])
        if auto is not None:
            add_attribute_to_class(ctx.api, ctx.cls, "id", auto)
    anything = AnyType(TypeOfAny.special_form)
    for target, backref in _backrefs(ctx.cls):
        if target.get(backref) is None:
            add_attribute_to_class(ctx.api, target.defn, backref, anything)
    for name in _object_ids(ctx.cls):
        if info.get(name) is None:
            add_attribute_to_class(ctx.api, ctx.cls, name, anything)
    if "DoesNotExist" not in info.names:
        error = ctx.api.named_type_or_none("peewee.DoesNotExist")
        if error is not None:
            add_attribute_to_class(
                ctx.api, ctx.cls, "DoesNotExist", TypeType(error), is_classvar=True
            )


def _foreign_keys(cls: ClassDef) -> list[tuple[str, CallExpr]]:
    """``name = ForeignKeyField(...)`` assignments in the class body."""
    found: list[tuple[str, CallExpr]] = []
    for stmt in cls.defs.body:
        if (
            isinstance(stmt, AssignmentStmt)
            and isinstance(stmt.rvalue, CallExpr)
            and _callee_text(stmt.rvalue.callee).endswith("ForeignKeyField")
            and isinstance(stmt.lvalues[0], NameExpr)
        ):
            found.append((stmt.lvalues[0].name, stmt.rvalue))
    return found


def _object_ids(cls: ClassDef) -> list[str]:
    """``owner_id`` for ``owner = ForeignKeyField(...)`` (or its ``object_id_name``)."""
    names: list[str] = []
    for name, call in _foreign_keys(cls):
        keywords = dict(zip(call.arg_names, call.args, strict=True))
        custom = keywords.get("object_id_name")
        names.append(custom.value if isinstance(custom, StrExpr) else f"{name}_id")
    return names


def _backrefs(cls: ClassDef) -> list[tuple[TypeInfo, str]]:
    """``ForeignKeyField(Target, backref="name")`` in the body, for a target of this module.

    A target in another module is left alone: its class is already analysed (and
    cached) on its own, so ``Target.name`` stays unknown there.
    """
    found: list[tuple[TypeInfo, str]] = []
    for _, call in _foreign_keys(cls):
        if not call.args:
            continue
        keywords = dict(zip(call.arg_names, call.args, strict=True))
        backref, target = keywords.get("backref"), call.args[0]
        if not isinstance(backref, StrExpr):
            continue
        if isinstance(target, StrExpr) and target.value == "self":
            found.append((cls.info, backref.value))
        elif (
            isinstance(target, RefExpr)
            and isinstance(target.node, TypeInfo)
            and target.node.module_name == cls.info.module_name
        ):
            found.append((target.node, backref.value))
    return found


def _declares_primary_key(cls: ClassDef) -> bool:
    """A field with ``primary_key=True``, an auto field, or ``Meta.primary_key``, in the body."""
    for stmt in cls.defs.body:
        if isinstance(stmt, ClassDef) and stmt.name == "Meta":
            if any(_assigns(inner, "primary_key") for inner in stmt.defs.body):
                return True
        elif isinstance(stmt, AssignmentStmt) and isinstance(stmt.rvalue, CallExpr):
            call = stmt.rvalue
            if _callee_text(call.callee).rsplit(".", 1)[-1] in AUTO_FIELDS:
                return True
            for name, arg in zip(call.arg_names, call.args, strict=True):
                if name == "primary_key" and isinstance(arg, NameExpr) and arg.name == "True":
                    return True
    return False


def _assigns(stmt: Statement, name: str) -> bool:
    return isinstance(stmt, AssignmentStmt) and any(
        isinstance(target, NameExpr) and target.name == name for target in stmt.lvalues
    )


# The schema classes -------------------------------------------------------------------------


def _schema_class(ctx: DynamicClassDefContext) -> None:
    """``UserRead = to_pydantic(...)``: define ``UserRead`` as a subclass of its base model."""
    existing = ctx.api.lookup_qualified(ctx.name, ctx.call, suppress_errors=True)
    if existing is not None and isinstance(existing.node, TypeInfo):
        return  # made in an earlier pass over this module
    base = _base_model(ctx)
    if base is None:
        if not ctx.api.final_iteration:
            ctx.api.defer()
        return
    info = ctx.api.basic_new_typeinfo(ctx.name, base, ctx.call.line)
    info.metaclass_type = info.calculate_metaclass_type()
    # The generated fields are only known when the code runs: any keyword builds
    # one, and they read as Any.
    anything = AnyType(TypeOfAny.special_form)
    data = Argument(Var("data", anything), anything, None, ARG_STAR2)
    add_method_to_class(ctx.api, info.defn, "__init__", [data], NoneType())
    # Marked as declared, so pydantic's dataclass_transform does not replace it
    # with one built from the (unknown) fields.
    info.names["__init__"].plugin_generated = False
    text = ctx.api.named_type("builtins.str")
    name = Argument(Var("name", text), text, None, ARG_POS)
    add_method_to_class(ctx.api, info.defn, "__getattr__", [name], anything)
    ctx.api.add_symbol_table_node(ctx.name, SymbolTableNode(GDEF, info, plugin_generated=True))


def _base_model(ctx: DynamicClassDefContext) -> Instance | None:
    """The ``base_model=`` class if it is one, else ``pydantic.BaseModel``; None: not ready yet."""
    for arg_name, arg in zip(ctx.call.arg_names, ctx.call.args, strict=True):
        if arg_name == "base_model" and isinstance(arg, RefExpr):
            if isinstance(arg.node, TypeInfo) and arg.node.has_base(BASE_MODEL):
                return Instance(arg.node, [])
            if arg.node is None or not isinstance(arg.node, TypeInfo):
                return None
    sym = ctx.api.lookup_fully_qualified_or_none(BASE_MODEL)
    if sym is None or not isinstance(sym.node, TypeInfo):
        return None
    return Instance(sym.node, [])


# Preparing the parsed tree ------------------------------------------------------------------


def _rewrite(file: MypyFile, unpacked: set[int]) -> None:
    modules = _module_names(file)
    finder = _Finder(modules, _imports_schemas(file))
    finder.walk(file.defs)
    if finder.bases:
        file.defs.insert(_after_future_imports(file), _hidden_any())
    for cls, index, owner in finder.bases:
        # ``X.Model`` becomes ``__fastpeewee_bases__.X.Model``; errors still say "Model".
        original = cls.base_type_exprs[index]
        head = NameExpr(BASES)
        middle = MemberExpr(head, owner)
        hidden = MemberExpr(middle, "Model")
        for node in (head, middle, hidden):
            node.set_line(original)
        cls.base_type_exprs[index] = hidden
    for stmt in finder.unpackings:
        # ``A, B, C = schemas(...)`` is read as ``A = B = C = schemas(...)``, which
        # mypy hands to the dynamic class hook name by name.
        target = stmt.lvalues[0]
        assert isinstance(target, TupleExpr)
        stmt.lvalues = list(target.items)
        unpacked.add(id(stmt.rvalue))


class _Finder:
    """Collects ``class C(X.Model)`` bases and ``A, B, C = schemas(...)`` statements.

    A plain walk over statements: mypy's own visitors are compiled and cannot be
    subclassed from interpreted code.
    """

    def __init__(self, modules: set[str], schemas_names: set[str]) -> None:
        self.modules = modules
        self.schemas_names = schemas_names
        self.bases: list[tuple[ClassDef, int, str]] = []
        self.unpackings: list[AssignmentStmt] = []

    def walk(self, statements: list[Statement]) -> None:
        for stmt in statements:
            if isinstance(stmt, ClassDef):
                self._class(stmt)
            elif isinstance(stmt, AssignmentStmt):
                if _is_schemas_unpacking(stmt, self.schemas_names):
                    self.unpackings.append(stmt)
            elif isinstance(stmt, Decorator):
                self.walk(stmt.func.body.body)
            elif isinstance(stmt, FuncDef):
                self.walk(stmt.body.body)
            for block in _blocks(stmt):
                self.walk(block.body)

    def _class(self, cls: ClassDef) -> None:
        for index, base in enumerate(cls.base_type_exprs):
            if (
                isinstance(base, MemberExpr)
                and base.name == "Model"
                and isinstance(base.expr, NameExpr)
                and base.expr.name not in self.modules
            ):
                self.bases.append((cls, index, base.expr.name))
        self.walk(cls.defs.body)


def _blocks(stmt: Statement) -> list[Block]:
    """The nested blocks of an ``if``/``with``/``try``/``for``/``while`` statement."""
    optional: list[Block | None] = []
    if isinstance(stmt, IfStmt):
        return [*stmt.body, *([stmt.else_body] if stmt.else_body else [])]
    if isinstance(stmt, WithStmt):
        return [stmt.body]
    if isinstance(stmt, (ForStmt, WhileStmt)):
        optional = [stmt.body, stmt.else_body]
    elif isinstance(stmt, TryStmt):
        optional = [stmt.body, *stmt.handlers, stmt.else_body, stmt.finally_body]
    return [block for block in optional if block is not None]


def _is_schemas_unpacking(stmt: AssignmentStmt, schemas_names: set[str]) -> bool:
    if len(stmt.lvalues) != 1 or not isinstance(stmt.rvalue, CallExpr):
        return False
    target = stmt.lvalues[0]
    if not isinstance(target, TupleExpr) or len(target.items) != 3:
        return False
    if not all(isinstance(item, NameExpr) for item in target.items):
        return False
    return _callee_text(stmt.rvalue.callee) in schemas_names


def _callee_text(callee: Expression) -> str:
    if isinstance(callee, NameExpr):
        return callee.name
    if isinstance(callee, MemberExpr):
        return f"{_callee_text(callee.expr)}.{callee.name}"
    return ""


def _module_names(file: MypyFile) -> set[str]:
    """Names bound by ``import a.b`` / ``import a as b``: ``X.Model`` through them stays as is."""
    names: set[str] = set()
    for node in file.imports:
        if isinstance(node, Import):
            names.update(alias or module.split(".")[0] for module, alias in node.ids)
    return names


def _imports_schemas(file: MypyFile) -> set[str]:
    """How this module spells fastpeewee's ``schemas`` (``schemas``, ``fastpeewee.schemas``...)."""
    spellings: set[str] = set()
    for node in file.imports:
        if isinstance(node, ImportFrom) and node.id in ("fastpeewee", "fastpeewee.schema"):
            spellings.update(alias or name for name, alias in node.names if name == "schemas")
        elif isinstance(node, Import):
            for module, alias in node.ids:
                if module in ("fastpeewee", "fastpeewee.schema"):
                    spellings.add(f"{alias or module}.schemas")
    return spellings


def _hidden_any() -> AssignmentStmt:
    """``__fastpeewee_bases__: Any`` (a declaration with no value, only in mypy's tree)."""
    any_type = AnyType(TypeOfAny.special_form)
    stmt = AssignmentStmt([NameExpr(BASES)], TempNode(any_type, no_rhs=True), type=any_type)
    stmt.set_line(1)
    return stmt


def _after_future_imports(file: MypyFile) -> int:
    """The first position after the docstring and ``from __future__`` imports."""
    for index, node in enumerate(file.defs):
        is_future = isinstance(node, ImportFrom) and node.id == "__future__"
        is_docstring = isinstance(node, ExpressionStmt) and isinstance(node.expr, StrExpr)
        if not (is_future or is_docstring):
            return index
    return len(file.defs)

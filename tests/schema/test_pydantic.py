"""to_pydantic and schemas(): metadata, constraints and variants (no database needed)."""

from __future__ import annotations

import datetime
import math
import subprocess
import sys
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import peewee
import pytest
from playhouse.pydantic_utils import to_pydantic as playhouse_to_pydantic
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from fastpeewee import Schemas, schema_type, schemas, to_pydantic

from ..schema_models import Category, Item, Person, Tag

PersonCreate, PersonUpdate, PersonRead = schemas(Person)
ItemCreate, ItemUpdate, ItemRead = schemas(Item)

GOOD = {"email": "ann@example.com"}


def errors_of(schema: type[BaseModel], **data: Any) -> list[str]:
    with pytest.raises(ValidationError) as info:
        schema(**data)
    return [".".join(map(str, e["loc"])) + ":" + e["type"] for e in info.value.errors()]


# -- the arguments and meaning of playhouse's to_pydantic -----------------------


@pytest.mark.parametrize("model", [Person, Item, Tag], ids=str)
def test_same_fields_and_required_set_as_playhouse(model: type[peewee.Model]) -> None:
    ours = to_pydantic(model).model_fields
    theirs = playhouse_to_pydantic(model).model_fields
    assert list(ours) == list(theirs)
    assert {n for n, f in ours.items() if f.is_required()} == {
        n for n, f in theirs.items() if f.is_required()
    }


def test_title_from_verbose_name_description_from_help_text() -> None:
    props = to_pydantic(Person).model_json_schema()["properties"]
    assert props["email"]["title"] == "E-mail address"
    assert props["email"]["description"] == "Where we write to"
    assert props["nickname"]["title"] == "Nickname"


def test_choices_are_a_literal_with_their_labels_described() -> None:
    schema = to_pydantic(Person)
    role = schema.model_json_schema()["properties"]["role"]
    assert role["enum"] == ["admin", "member"]
    assert role["description"] == "Choices: 'admin' = Administrator, 'member' = Member"
    assert schema(**GOOD, role="admin").role == "admin"
    assert errors_of(schema, **GOOD, role="boss") == ["role:literal_error"]


def test_choices_given_as_an_iterator_are_listed_too() -> None:
    class Ticket(peewee.Model):
        state = peewee.CharField(choices=((v, v.title()) for v in ("open", "closed")))

    for _ in range(2):  # and in every schema made afterwards
        schema = to_pydantic(Ticket)
        state = schema.model_json_schema()["properties"]["state"]
        assert state["enum"] == ["open", "closed"]
        assert state["description"] == "Choices: 'open' = Open, 'closed' = Closed"


def test_defaults_plain_callable_and_null() -> None:
    person = to_pydantic(Person)(**GOOD)
    assert person.role == "member"  # type: ignore[attr-defined]
    assert person.balance == Decimal("0.00")  # type: ignore[attr-defined]
    assert person.nickname is None  # type: ignore[attr-defined]
    assert isinstance(person.joined, datetime.datetime)  # type: ignore[attr-defined]
    assert errors_of(to_pydantic(Person)) == ["email:missing"]


def test_foreign_keys_appear_as_their_id() -> None:
    fields = to_pydantic(Item).model_fields
    assert list(fields) == ["title", "owner_id", "reviewer_id"]
    assert fields["owner_id"].is_required()
    assert fields["reviewer_id"].default is None


def test_exclude_and_include_take_names_fields_and_backrefs() -> None:
    assert "email" not in to_pydantic(Person, exclude=[Person.email]).model_fields
    assert "owner_id" not in to_pydantic(Item, exclude=["owner"]).model_fields
    assert list(to_pydantic(Item, include=["title", Item.owner]).model_fields) == [
        "title",
        "owner_id",
    ]
    nested = to_pydantic(Person, relationships={Person.items: ItemRead}, exclude=[Person.items])
    assert "items" not in nested.model_fields
    with pytest.raises(ValueError, match="field names"):
        to_pydantic(Person, exclude=[42])


def test_model_name_and_base_model() -> None:
    class WithPassword(BaseModel):
        password: str

    schema = to_pydantic(Person, model_name="SignUp", base_model=WithPassword)
    assert schema.__name__ == "SignUp"
    assert issubclass(schema, WithPassword)
    assert errors_of(schema, **GOOD) == ["password:missing"]
    assert schema.model_config["from_attributes"]


def test_fields_declared_on_the_base_model_win() -> None:
    class StrictEmail(BaseModel):
        email: str = Field(pattern=r"^[^@]+@[^@]+$", title="Email")

    schema = to_pydantic(Person, variant="create", base_model=StrictEmail)
    assert schema.model_fields["email"].title == "Email"
    assert errors_of(schema, email="not-an-address") == ["email:string_pattern_mismatch"]
    assert "nickname" in schema.model_fields


def test_relationships_nest_schemas_and_backrefs_as_lists() -> None:
    person_read = to_pydantic(Person, variant="read", relationships={Person.items: list[ItemRead]})
    item_read = to_pydantic(Item, variant="read", relationships={Item.reviewer: PersonRead})
    assert person_read.model_fields["items"].annotation == list[ItemRead]
    assert person_read(id=1, **GOOD).items == []
    assert item_read.model_fields["reviewer"].default is None  # nullable fk
    assert "reviewer_id" not in item_read.model_fields
    playhouse_style = to_pydantic(Person, relationships={Person.items: list[ItemRead]})
    assert playhouse_style.model_fields["items"].annotation == list[ItemRead]
    with pytest.raises(ValueError, match="relationships keys"):
        to_pydantic(Person, relationships={Person.email: ItemRead})


@pytest.mark.parametrize("schema", [ItemRead, Sequence[ItemRead], tuple[ItemRead, ...]])
def test_a_backref_schema_that_is_not_a_list_is_refused_as_in_playhouse(schema: Any) -> None:
    with pytest.raises(ValueError, match=r"must use a list type.*list\[ItemRead\]"):
        to_pydantic(Person, relationships={Person.items: schema})
    with pytest.raises(ValueError, match="back-references must use a List type"):
        playhouse_to_pydantic(Person, relationships={Person.items: schema})
    # Excluded, it is not looked at (playhouse neither).
    to_pydantic(Person, relationships={Person.items: schema}, exclude=[Person.items])


# -- constraints -------------------------------------------------------------------


def test_max_length_of_char_fields() -> None:
    assert PersonCreate(email="a" * 50)
    assert errors_of(PersonCreate, email="a" * 51) == ["email:string_too_long"]
    assert PersonCreate(**GOOD, bio="b" * 10_000)  # TextField: no limit
    schema = PersonCreate.model_json_schema()
    assert schema["properties"]["email"]["maxLength"] == 50


def test_text_with_nul_is_refused() -> None:
    assert errors_of(PersonCreate, email="a\x00b") == ["email:value_error"]


def test_nullability() -> None:
    assert PersonCreate(**GOOD, nickname=None).nickname is None
    assert errors_of(PersonCreate, email=None) == ["email:string_type"]
    assert errors_of(ItemCreate, title="t", owner_id=None) == ["owner_id:int_type"]
    assert ItemCreate(title="t", owner_id=1, reviewer_id=None)


@pytest.mark.parametrize(
    ("name", "bits"),
    [("age", 16), ("score", 32), ("karma", 64)],
    ids=["SmallIntegerField", "IntegerField", "BigIntegerField"],
)
def test_integer_ranges(name: str, bits: int) -> None:
    low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    assert getattr(PersonCreate(**GOOD, **{name: high}), name) == high
    assert getattr(PersonCreate(**GOOD, **{name: low}), name) == low
    assert errors_of(PersonCreate, **GOOD, **{name: high + 1}) == [f"{name}:less_than_equal"]
    assert errors_of(PersonCreate, **GOOD, **{name: low - 1}) == [f"{name}:greater_than_equal"]


@pytest.mark.parametrize("value", [2**31, 2**63, 2**64, -(2**63) - 1, 10**30], ids=str)
def test_foreign_key_ids_beyond_the_column_are_refused(value: int) -> None:
    errors = errors_of(ItemCreate, title="t", owner_id=value)
    assert errors[0].startswith("owner_id:")


def test_decimal_digits_and_places() -> None:
    assert PersonCreate(**GOOD, balance="9999.99").balance == Decimal("9999.99")
    assert errors_of(PersonCreate, **GOOD, balance="99999.99") == ["balance:decimal_max_digits"]
    assert errors_of(PersonCreate, **GOOD, balance="1.234") == ["balance:decimal_max_places"]
    assert errors_of(PersonCreate, **GOOD, balance="NaN") == ["balance:finite_number"]


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf], ids=str)
def test_floats_must_be_finite(value: float) -> None:
    assert errors_of(PersonCreate, **GOOD, ratio=value) == ["ratio:finite_number"]


# -- variants ----------------------------------------------------------------------


def test_schemas_returns_named_create_update_read() -> None:
    result = schemas(Person, model_name="Member")
    assert isinstance(result, Schemas)
    assert [s.__name__ for s in result] == ["MemberCreate", "MemberUpdate", "MemberRead"]
    assert to_pydantic(Person, variant="read").__name__ == "PersonRead"
    assert to_pydantic(Person).__name__ == "PersonSchema"
    with pytest.raises(ValueError, match="variant"):
        to_pydantic(Person, variant="delete")  # type: ignore[arg-type]


def test_create_has_no_autofield_read_has_it() -> None:
    assert "id" not in PersonCreate.model_fields
    assert next(iter(PersonRead.model_fields)) == "id"
    assert "id" in to_pydantic(Person, variant="create", exclude_autofield=False).model_fields


def test_update_fields_may_all_be_left_out() -> None:
    assert PersonUpdate().model_dump(exclude_unset=True) == {}
    update = PersonUpdate(nickname=None, score=3)
    assert update.model_dump(exclude_unset=True) == {"nickname": None, "score": 3}
    assert all(not f.is_required() for f in PersonUpdate.model_fields.values())


def test_update_keeps_constraints_and_refuses_null_for_not_null_columns() -> None:
    assert errors_of(PersonUpdate, email=None) == ["email:string_type"]
    assert errors_of(PersonUpdate, email="a" * 51) == ["email:string_too_long"]
    assert errors_of(PersonUpdate, score=2**31) == ["score:less_than_equal"]


def test_read_does_not_recheck_value_limits_of_stored_rows() -> None:
    # SQLite does not enforce VARCHAR lengths: a read must not fail on such a row.
    stored = Person(id=7, email="x" * 60, score=0, karma=0, balance=Decimal("0.1"))
    assert PersonRead.model_validate(stored).email == "x" * 60


def test_read_output_schema_lists_every_field_as_required() -> None:
    output = PersonRead.model_json_schema(mode="serialization")
    assert set(output["required"]) == set(PersonRead.model_fields)


def test_relationships_are_for_read_schemas_only() -> None:
    with pytest.raises(ValueError, match="nested writes"):
        to_pydantic(Person, variant="create", relationships={Person.items: ItemRead})
    result = schemas(Person, relationships={Person.items: list[ItemRead]})
    assert "items" in result.read.model_fields
    assert "items" not in result.create.model_fields


def test_self_referencing_model() -> None:
    category = to_pydantic(Category, variant="read")
    assert list(category.model_fields) == ["id", "name", "parent_id"]


def test_fastpeewee_imports_without_pydantic_and_says_how_to_get_it() -> None:
    program = (
        "import sys; sys.modules['pydantic'] = None\n"
        "import peewee, fastpeewee\n"
        "class M(peewee.Model): pass\n"
        "try:\n"
        "    fastpeewee.to_pydantic(M)\n"
        "except peewee.ImproperlyConfigured as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=True
    )
    assert "pip install 'fastpeewee[pydantic]'" in done.stdout


@pytest.mark.parametrize(
    ("field", "good", "bad"),
    [
        (Person.id, 2**31 - 1, 2**31),
        (Item.owner, -(2**31), 2**63),
        (Person.karma, 2**63 - 1, 2**63),
        (Person.email, "a" * 50, "a" * 51),
        (Person.nickname, None, "n" * 21),
    ],
    ids=["autofield", "foreign-key", "bigint", "varchar", "nullable"],
)
def test_schema_type_of_one_field(field: peewee.Field, good: Any, bad: Any) -> None:
    adapter = TypeAdapter(schema_type(field))
    assert adapter.validate_python(good) == good
    with pytest.raises(ValidationError):
        adapter.validate_python(bad)

from __future__ import annotations

import pytest
from sqlalchemy import Engine, text

from web_map import accounts, ensure_demo_users
from web_map.errors import AccountError
from weijian_testdata import runs as rf


@pytest.fixture()
def town(engine: Engine) -> None:
    rf.add_street_town(engine, "ST01", "测试一镇", rf.rect(0, 0, 100, 100))


def test_password_is_stored_as_salted_argon2(engine: Engine, town: None) -> None:
    accounts.add_user(engine, "li", "secret-pass-1", "reviewer")
    accounts.add_user(engine, "wang", "secret-pass-1", "reviewer")
    with engine.connect() as conn:
        hashes = (
            conn.execute(text("SELECT password_hash FROM app_user ORDER BY username"))
            .scalars()
            .all()
        )
    assert all(h.startswith("$argon2id$") for h in hashes)
    assert hashes[0] != hashes[1]  # salted
    assert "secret-pass-1" not in "".join(hashes)
    assert accounts.authenticate(engine, "li", "secret-pass-1") is not None
    assert accounts.authenticate(engine, "li", "wrong-pass-1") is None
    assert accounts.authenticate(engine, "nobody", "secret-pass-1") is None


def test_street_town_user_is_bound_to_an_existing_town(engine: Engine, town: None) -> None:
    with pytest.raises(AccountError, match="needs --street-town"):
        accounts.add_user(engine, "zhen", "secret-pass-1", "street_town")
    with pytest.raises(AccountError, match="no 街镇"):
        accounts.add_user(engine, "zhen", "secret-pass-1", "street_town", street_town="ST99")
    user = accounts.add_user(engine, "zhen", "secret-pass-1", "街镇用户", street_town="测试一镇")
    assert user.street_town == "ST01" and user.role == accounts.WebRole.STREET_TOWN
    with pytest.raises(AccountError, match="only a 街镇 user"):
        accounts.add_user(engine, "li", "secret-pass-1", "reviewer", street_town="ST01")


def test_bad_input_is_refused(engine: Engine, town: None) -> None:
    with pytest.raises(AccountError, match="at least 8"):
        accounts.add_user(engine, "li", "short", "reviewer")
    with pytest.raises(AccountError, match="unknown"):
        accounts.add_user(engine, "li", "secret-pass-1", "boss")
    accounts.add_user(engine, "li", "secret-pass-1", "reviewer")
    with pytest.raises(AccountError, match="exists already"):
        accounts.add_user(engine, "li", "secret-pass-2", "reviewer")


def test_disable_and_passwd_end_sessions(engine: Engine, town: None) -> None:
    user = accounts.add_user(engine, "li", "secret-pass-1", "reviewer")
    disabled = accounts.set_disabled(engine, "li")
    assert disabled.disabled and disabled.session_epoch == user.session_epoch + 1
    assert accounts.authenticate(engine, "li", "secret-pass-1") is None
    accounts.set_disabled(engine, "li", False)
    changed = accounts.set_password(engine, "li", "secret-pass-2")
    assert changed.session_epoch == user.session_epoch + 3  # disable, enable, passwd
    assert accounts.authenticate(engine, "li", "secret-pass-2") is not None


def test_demo_users_are_idempotent_and_log_in(engine: Engine, town: None) -> None:
    first = ensure_demo_users(engine)
    accounts.set_disabled(engine, "reviewer")
    second = ensure_demo_users(engine)
    assert first == second
    assert {u.role for u in first} == {r.value for r in accounts.WebRole}
    assert len(accounts.list_users(engine)) == 5
    for demo in second:
        user = accounts.authenticate(engine, demo.username, demo.password)
        assert user is not None and user.role.value == demo.role
    assert next(u for u in first if u.role == "street_town").street_town == "ST01"

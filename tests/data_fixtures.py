"""Writers of tiny dataset folders in each supported raw format (tests build their own inputs)."""

from __future__ import annotations

from pathlib import Path

GENRE_FLAGS = "|".join(["0"] * 18 + ["1"])


def write_ml100k(folder: Path, ratings: list[tuple[int, int, int, int]], users=None, n_items: int = 6) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "u.data").write_text("".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in ratings))
    users = users or [(u, 20 + 7 * u, "MF"[u % 2], "student") for u in sorted({r[0] for r in ratings})]
    (folder / "u.user").write_text("".join(f"{u}|{a}|{g}|{o}|00000\n" for u, a, g, o in users))
    items = "".join(f"{i}|Movie {i} (1995)|01-Jan-1995||http://x|{GENRE_FLAGS}\n" for i in range(1, n_items + 1))
    (folder / "u.item").write_text(items, encoding="latin-1")
    return folder


def small_ml100k_ratings(n_users: int = 4, per_user: int = 5) -> list[tuple[int, int, int, int]]:
    return [(u, 1 + (u + k) % 6, 1 + (u * k) % 5, 1000 * u + k) for u in range(1, n_users + 1) for k in range(per_user)]


def write_ml1m(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ratings.dat").write_text(
        "".join(f"{u}::{i}::{1 + (u + i) % 5}::{100 * i + u}\n" for u in (1, 2, 3) for i in (10, 20, 30, 40))
    )
    (folder / "users.dat").write_text("1::F::1::10::48067\n2::M::56::16::70072\n3::M::25::15::55117\n")
    movies = "10::Amélie (2001)::Comedy|Romance\n20::Heat (1995)::Action\n30::Up (2009)::Animation\n40::X::Drama\n"
    (folder / "movies.dat").write_bytes(movies.encode("latin-1"))
    return folder


INSURANCE_HEADER = (
    "ID,join_date,sex,marital_status,birth_year,branch_code,occupation_code,occupation_category_code,"
    + ",".join(f"P{k:02d}" for k in range(21))
)


def insurance_row(uid: str, sex: str, marital: str, year: str, occ_cat: str, owned: tuple[int, ...]) -> str:
    flags = ["1" if k in owned else "0" for k in range(21)]
    return f"{uid},1/1/2018,{sex},{marital},{year},B1,OCC1,{occ_cat}," + ",".join(flags)


def write_insurance(folder: Path, rows: list[str] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = rows or [
        insurance_row("U1", "M", "M", "1955", "T4MS", (0, 1, 2)),
        insurance_row("U2", "F", "s", "1968", "T4MS", (1, 3)),  # lower-case marital code
        insurance_row("U3", "M", "D", "1975", "56SI", (0, 4, 5)),  # rare marital code -> U
        insurance_row("U4", "F", "U", "1985", "JD7X", (2, 6)),
        insurance_row("U5", "M", "M", "1992", "L44T", (1, 2, 7)),  # 4th occupation -> other
        insurance_row("U6", "", "M", "1980", "T4MS", (1, 2)),  # blank sex -> dropped
    ]
    (folder / "Train.csv").write_text(INSURANCE_HEADER + "\n" + "\n".join(rows) + "\n")
    return folder


def ownership_rows(n_users: int = 36) -> list[str]:
    """Zimnat-shaped customers: each owns 2 products, every third owns 3 (so no one has enough for
    an FCPO start state), all 21 products are owned by someone; dirty codes the loader normalises
    (lower-case sex and marital, a rare marital code) and no row it drops."""
    years, categories = ("1955", "1966", "1974", "1983", "1994"), ("T4MS", "56SI", "JD7X", "90QI")
    dirty = {1: ("M", "s"), 2: ("f", "M"), 3: ("F", "W")}
    rows = []
    for k in range(n_users):
        owned = (k % 21, (k + 5) % 21) + (((k + 11) % 21,) if k % 3 == 0 else ())
        sex, marital = dirty.get(k, ("FM"[k % 2], "UMS"[k % 3]))
        rows.append(insurance_row(f"C{k:04d}", sex, marital, years[k % 5], categories[k % 4], owned))
    return rows

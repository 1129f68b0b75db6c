"""Datasets, model versions, recipe versions, and the recipe templates shipped in ``conf/recipe``."""

from __future__ import annotations

from pathlib import Path

import yaml
from fastapi import APIRouter, Response
from sqlalchemy import delete, func
from sqlmodel import Session, select

from robustlit_service.context import (
    CALLER,
    SESSION,
    Principal,
    audit,
    require_role,
    require_scope,
)
from robustlit_service.errors import ApiError, not_found
from robustlit_service.models import Dataset, ExperimentRun, Recipe, RegisteredModel
from robustlit_service.routes.common import Filter, Limit, Offset, get_project, paginate
from robustlit_service.schemas import (
    DatasetIn,
    DatasetOut,
    DatasetUpdate,
    Id,
    Items,
    ModelIn,
    ModelOut,
    Page,
    RecipeIn,
    RecipeOut,
    TemplateOut,
)

router = APIRouter()


def recipe_templates() -> list[TemplateOut]:
    """The recipe files of ``conf/recipe``: name, ``recipe_description`` (or the file's first comment), content.

    Example:
        >>> "baseline" in [t.name for t in recipe_templates()]
        True
    """
    from robustlit.cli.app import config_dir

    templates = []
    for path in sorted((config_dir() / "recipe").glob("*.yaml")):
        content = path.read_text(encoding="utf-8")
        templates.append(TemplateOut(name=path.stem, description=_description(content), content=content))
    return templates


def template_names() -> set[str]:
    """Names of the recipe templates."""
    from robustlit.cli.app import config_dir

    return {path.stem for path in Path(config_dir(), "recipe").glob("*.yaml")}


def _description(content: str) -> str:
    try:
        data = yaml.safe_load(content)
    except yaml.YAMLError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("recipe_description"), str):
        return data["recipe_description"].strip()
    comments = [line.lstrip("# ").strip() for line in content.splitlines()
                if line.startswith("#") and not line.startswith("# @package")]
    return comments[0] if comments else ""


@router.get("/recipes/templates", response_model=Items[TemplateOut], tags=["recipes"])
def list_templates(principal: Principal = CALLER) -> Items[TemplateOut]:
    """The recipe templates runs can name directly or stored recipes can build on."""
    require_scope(principal, "projects:read")
    return Items(items=recipe_templates())


# datasets ---------------------------------------------------------------------------------------------------------


@router.post("/projects/{project_id}/datasets", response_model=DatasetOut, status_code=201, tags=["datasets"])
def create_dataset(project_id: Id, body: DatasetIn, principal: Principal = CALLER,
                   session: Session = SESSION) -> DatasetOut:
    """Register a dataset (editors)."""
    get_project(session, project_id)
    require_role(session, principal, project_id, "editor", "projects:write")
    if session.exec(select(Dataset).where(Dataset.project_id == project_id, Dataset.name == body.name)).first():
        raise ApiError(409, "conflict", f"dataset {body.name!r} already exists in project {project_id}")
    dataset = Dataset(project_id=project_id, **body.model_dump())
    session.add(dataset)
    session.flush()
    audit(session, principal, "dataset.create", "dataset", dataset.id, project_id, name=dataset.name)
    return DatasetOut.model_validate(dataset, from_attributes=True)


@router.get("/projects/{project_id}/datasets", response_model=Page[DatasetOut], tags=["datasets"])
def list_datasets(project_id: Id, limit: Limit = 50, offset: Offset = 0, name: Filter = None,
                  principal: Principal = CALLER,
                  session: Session = SESSION) -> Page[DatasetOut]:
    """The project's datasets."""
    get_project(session, project_id)
    require_role(session, principal, project_id, "viewer", "projects:read")
    query = select(Dataset).where(Dataset.project_id == project_id)
    if name is not None:
        query = query.where(Dataset.name == name)
    rows, total = paginate(session, query.order_by(Dataset.id), limit, offset)
    return Page(items=[DatasetOut.model_validate(r, from_attributes=True) for r in rows], total=total, limit=limit,
                offset=offset)


def _dataset(session: Session, project_id: int, dataset_id: int) -> Dataset:
    dataset = session.get(Dataset, dataset_id)
    if dataset is None or dataset.project_id != project_id:
        raise not_found("dataset", dataset_id)
    return dataset


@router.get("/projects/{project_id}/datasets/{dataset_id}", response_model=DatasetOut, tags=["datasets"])
def read_dataset(project_id: Id, dataset_id: Id, principal: Principal = CALLER,
                 session: Session = SESSION) -> DatasetOut:
    """One dataset."""
    get_project(session, project_id)
    require_role(session, principal, project_id, "viewer", "projects:read")
    return DatasetOut.model_validate(_dataset(session, project_id, dataset_id), from_attributes=True)


@router.patch("/projects/{project_id}/datasets/{dataset_id}", response_model=DatasetOut, tags=["datasets"])
def update_dataset(project_id: Id, dataset_id: Id, body: DatasetUpdate, principal: Principal = CALLER,
                   session: Session = SESSION) -> DatasetOut:
    """Change a dataset's location or description (editors)."""
    get_project(session, project_id)
    require_role(session, principal, project_id, "editor", "projects:write")
    dataset = _dataset(session, project_id, dataset_id)
    changes = body.model_dump(exclude_none=True)
    for key, value in changes.items():
        setattr(dataset, key, value)
    session.add(dataset)
    audit(session, principal, "dataset.update", "dataset", dataset.id, project_id, **changes)
    return DatasetOut.model_validate(dataset, from_attributes=True)


@router.delete("/projects/{project_id}/datasets/{dataset_id}", status_code=204, tags=["datasets"])
def delete_dataset(project_id: Id, dataset_id: Id, principal: Principal = CALLER,
                   session: Session = SESSION) -> Response:
    """Delete a dataset (editors)."""
    get_project(session, project_id)
    require_role(session, principal, project_id, "editor", "projects:write")
    dataset = _dataset(session, project_id, dataset_id)
    session.delete(dataset)
    audit(session, principal, "dataset.delete", "dataset", dataset_id, project_id)
    return Response(status_code=204)


# models -----------------------------------------------------------------------------------------------------------


@router.post("/projects/{project_id}/models", response_model=ModelOut, status_code=201, tags=["models"])
def create_model(project_id: Id, body: ModelIn, principal: Principal = CALLER,
                 session: Session = SESSION) -> ModelOut:
    """Register a new version of a model (editors); versions count up from 1 per name."""
    get_project(session, project_id)
    require_role(session, principal, project_id, "editor", "projects:write")
    if body.source_run_id is not None:
        run = session.get(ExperimentRun, body.source_run_id)
        if run is None or run.project_id != project_id:
            raise not_found("run", repr(body.source_run_id))
    latest = session.exec(select(func.max(RegisteredModel.version)).where(
        RegisteredModel.project_id == project_id, RegisteredModel.name == body.name)).one()
    model = RegisteredModel(project_id=project_id, version=(latest or 0) + 1, **body.model_dump())
    session.add(model)
    session.flush()
    audit(session, principal, "model.create", "model", model.id, project_id, name=model.name, version=model.version)
    return ModelOut.model_validate(model, from_attributes=True)


@router.get("/projects/{project_id}/models", response_model=Page[ModelOut], tags=["models"])
def list_models(project_id: Id, limit: Limit = 50, offset: Offset = 0, name: Filter = None,
                principal: Principal = CALLER,
                session: Session = SESSION) -> Page[ModelOut]:
    """Every model version of the project (filter with ``name``), newest version first per name."""
    get_project(session, project_id)
    require_role(session, principal, project_id, "viewer", "projects:read")
    query = select(RegisteredModel).where(RegisteredModel.project_id == project_id)
    if name is not None:
        query = query.where(RegisteredModel.name == name)
    query = query.order_by(RegisteredModel.name, RegisteredModel.version.desc())
    rows, total = paginate(session, query, limit, offset)
    return Page(items=[ModelOut.model_validate(r, from_attributes=True) for r in rows], total=total, limit=limit,
                offset=offset)


def get_model(session: Session, model_id: int, project_id: int | None = None) -> RegisteredModel:
    """A model version, or a 404 (also when it belongs to another project)."""
    model = session.get(RegisteredModel, model_id)
    if model is None or (project_id is not None and model.project_id != project_id):
        raise not_found("model", model_id)
    return model


@router.get("/projects/{project_id}/models/{model_id}", response_model=ModelOut, tags=["models"])
def read_model(project_id: Id, model_id: Id, principal: Principal = CALLER,
               session: Session = SESSION) -> ModelOut:
    """One model version."""
    get_project(session, project_id)
    require_role(session, principal, project_id, "viewer", "projects:read")
    return ModelOut.model_validate(get_model(session, model_id, project_id), from_attributes=True)


@router.delete("/projects/{project_id}/models/{model_id}", status_code=204, tags=["models"])
def delete_model(project_id: Id, model_id: Id, principal: Principal = CALLER,
                 session: Session = SESSION) -> Response:
    """Delete a model version that no run used (editors)."""
    get_project(session, project_id)
    require_role(session, principal, project_id, "editor", "projects:write")
    model = get_model(session, model_id, project_id)
    if session.exec(select(ExperimentRun.id).where(ExperimentRun.model_id == model_id)).first() is not None:
        raise ApiError(409, "conflict", f"model {model_id} was evaluated by runs; it cannot be deleted")
    session.delete(model)
    audit(session, principal, "model.delete", "model", model_id, project_id)
    return Response(status_code=204)


# recipes ----------------------------------------------------------------------------------------------------------


@router.post("/projects/{project_id}/recipes", response_model=RecipeOut, status_code=201, tags=["recipes"])
def create_recipe(project_id: Id, body: RecipeIn, principal: Principal = CALLER,
                  session: Session = SESSION) -> RecipeOut:
    """Store a new version of a recipe (editors); ``base`` must be a template name."""
    get_project(session, project_id)
    require_role(session, principal, project_id, "editor", "projects:write")
    if body.base is not None and body.base not in template_names():
        choices = ", ".join(sorted(template_names()))
        raise ApiError(422, "invalid_request", f"base: unknown recipe template {body.base!r}; choose one of: {choices}")
    _check_overrides(body.overrides, "overrides")
    latest = session.exec(select(func.max(Recipe.version)).where(Recipe.project_id == project_id,
                                                                 Recipe.name == body.name)).one()
    recipe = Recipe(project_id=project_id, version=(latest or 0) + 1, **body.model_dump())
    session.add(recipe)
    session.flush()
    audit(session, principal, "recipe.create", "recipe", recipe.id, project_id, name=recipe.name,
          version=recipe.version)
    return RecipeOut.model_validate(recipe, from_attributes=True)


def _check_overrides(overrides: list[str], field: str) -> None:
    from robustlit.cli.app import config_dir
    from robustlit.cli.overrides import check_group_overrides
    from robustlit.errors import ConfigError

    try:
        check_group_overrides(overrides, config_dir())
    except ConfigError as error:
        raise ApiError(422, "invalid_request", f"{field}: {error}") from None


@router.get("/projects/{project_id}/recipes", response_model=Page[RecipeOut], tags=["recipes"])
def list_recipes(project_id: Id, limit: Limit = 50, offset: Offset = 0, name: Filter = None,
                 latest: bool = False, principal: Principal = CALLER,
                 session: Session = SESSION) -> Page[RecipeOut]:
    """Stored recipes: every version (newest first per name), or with ``latest=true`` only the newest ones."""
    get_project(session, project_id)
    require_role(session, principal, project_id, "viewer", "projects:read")
    query = select(Recipe).where(Recipe.project_id == project_id)
    if name is not None:
        query = query.where(Recipe.name == name)
    if latest:
        newest = (select(Recipe.name, func.max(Recipe.version).label("version"))
                  .where(Recipe.project_id == project_id).group_by(Recipe.name).subquery())
        query = query.join(newest, (newest.c.name == Recipe.name) & (newest.c.version == Recipe.version))
    rows, total = paginate(session, query.order_by(Recipe.name, Recipe.version.desc()), limit, offset)
    return Page(items=[RecipeOut.model_validate(r, from_attributes=True) for r in rows], total=total, limit=limit,
                offset=offset)


@router.get("/projects/{project_id}/recipes/{recipe_id}", response_model=RecipeOut, tags=["recipes"])
def read_recipe(project_id: Id, recipe_id: Id, principal: Principal = CALLER,
                session: Session = SESSION) -> RecipeOut:
    """One recipe version."""
    get_project(session, project_id)
    require_role(session, principal, project_id, "viewer", "projects:read")
    recipe = session.get(Recipe, recipe_id)
    if recipe is None or recipe.project_id != project_id:
        raise not_found("recipe", recipe_id)
    return RecipeOut.model_validate(recipe, from_attributes=True)


@router.delete("/projects/{project_id}/recipes/{recipe_id}", status_code=204, tags=["recipes"])
def delete_recipe(project_id: Id, recipe_id: Id, principal: Principal = CALLER,
                  session: Session = SESSION) -> Response:
    """Delete one recipe version (editors); runs keep the recipe name they were launched with."""
    get_project(session, project_id)
    require_role(session, principal, project_id, "editor", "projects:write")
    removed = session.execute(delete(Recipe).where(Recipe.id == recipe_id, Recipe.project_id == project_id)).rowcount
    if not removed:
        raise not_found("recipe", recipe_id)
    audit(session, principal, "recipe.delete", "recipe", recipe_id, project_id)
    return Response(status_code=204)

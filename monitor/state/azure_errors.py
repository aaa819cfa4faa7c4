"""The Azure SDK's storage errors, mapped once onto plmon's own (:mod:`plmon.monitor.state.scaleout`).

Why one place: the four scale-out backends meet the same SDK exceptions, and the service must see only
``AlreadyWritten``, ``CasConflict``, ``NotFound`` or ``StorageUnavailable``, each with one line naming the object.
The SDK's own text (which can span many lines and carry request ids) never reaches a log or an operator as is.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)

from plmon.monitor.state.scaleout import (
    AlreadyWritten,
    CasConflict,
    NotFound,
    ScaleoutError,
    StorageUnavailable,
)

__all__ = ["error_code", "first_line", "storage_errors"]


def error_code(err: BaseException) -> str:
    """The service's error code (``LeaseAlreadyPresent``, ``ConditionNotMet``, ...), or ''."""
    code = getattr(err, "error_code", None)
    return str(getattr(code, "value", code) or "")  # the storage SDKs give a StorageErrorCode enum


def first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:300] if text else type(err).__name__


@contextmanager
def storage_errors(what: str) -> Iterator[None]:
    """Run one storage call; raise plmon's exception for what failed, with ``what`` naming the object."""
    try:
        yield
    except ScaleoutError:
        raise
    except ResourceExistsError as err:
        raise AlreadyWritten(f"{what}: exists already ({error_code(err) or 409})") from None
    except ResourceModifiedError:
        raise CasConflict(f"{what}: changed since it was read (ETag mismatch)") from None
    except ResourceNotFoundError:
        raise NotFound(f"{what}: not found") from None
    except ClientAuthenticationError:
        raise StorageUnavailable(f"{what}: storage refused the credentials") from None
    except HttpResponseError as err:
        if err.status_code == 412:
            raise CasConflict(f"{what}: changed since it was read ({error_code(err) or 412})") from None
        raise StorageUnavailable(f"{what}: storage answered {err.status_code} {error_code(err)}".rstrip()) from None
    except AzureError as err:
        raise StorageUnavailable(f"{what}: storage did not answer ({first_line(err)})") from None

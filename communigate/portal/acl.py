"""Transitional name for :class:`communigate.store.acl.Identity`.

The ACL code lives in :mod:`communigate.store.acl`.  Only the FTP code
being rewritten (``communigate/protocols/ftp/shell.py`` and its successor
``communigate/portal/filesession.py``) still imports ``Identity`` from here;
the FTP rewrite changes those imports to :mod:`communigate.store.acl`, and
this module is removed with it.  New code must not import it.
"""

from __future__ import annotations

from communigate.store.acl import Identity

__all__ = ["Identity"]

"""How to reach storage (the artifact store, or a dataset's source): fsspec options, typed.

Credentials are secrets: they come from the environment (``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN``, which s3fs reads itself), a named profile
(``profile: research`` in ``~/.aws/credentials``), or the typed ``key`` / ``secret`` / ``token``
fields below. Those three are `SecretStr`: they print as ``**********`` in every record, log and
error, are never part of a cache key, and only reach fsspec in `StorageOptions.to_fsspec`.
Everything else is plain configuration (an endpoint, a region), and an untyped option that looks
like a credential is refused rather than written into a record in clear text.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, SecretStr, field_validator

from schemas.base import Model

#: Option names (in ``client_kwargs`` / ``options``) that carry credentials; use the typed fields.
SECRET_NAMES = frozenset(
    {
        "key",
        "secret",
        "token",
        "password",
        "aws_access_key_id",
        "aws_secret_access_key",
        "aws_session_token",
        "access_key",
        "secret_key",
        "session_token",
        "api_key",
    }
)


def _refuse_secrets(value: dict[str, Any], where: str) -> dict[str, Any]:
    found = sorted(k for k in value if k.lower() in SECRET_NAMES)
    if found:
        raise ValueError(
            f"{where} may not carry credentials ({', '.join(found)}): use the typed fields "
            "`key`, `secret`, `token` (kept secret), a `profile`, or the AWS_* environment "
            "variables"
        )
    return value


class StorageOptions(Model):
    """fsspec options for a store or a data source (local paths need none).

    YAML::

        storage_options:
          endpoint_url: http://127.0.0.1:9000   # an S3-compatible server (MinIO, moto, ...)
          profile: research                      # or key/secret, or the AWS_* environment
    """

    endpoint_url: str | None = Field(None, description="S3-compatible endpoint, e.g. MinIO.")
    region: str | None = Field(None, description="Region name (S3).")
    profile: str | None = Field(None, description="Named credentials profile (~/.aws).")
    anon: bool | None = Field(None, description="Anonymous access (public buckets).")
    key: SecretStr | None = Field(None, description="Access key id (secret; prefer the env).")
    secret: SecretStr | None = Field(None, description="Secret access key (secret).")
    token: SecretStr | None = Field(None, description="Session token (secret).")
    client_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Passed to the client (e.g. botocore settings)."
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description="Other fsspec options, passed as they are."
    )

    @field_validator("client_kwargs")
    @classmethod
    def _no_secret_client_kwargs(cls, value: dict[str, Any]) -> dict[str, Any]:
        return _refuse_secrets(value, "client_kwargs")

    @field_validator("options")
    @classmethod
    def _no_secret_options(cls, value: dict[str, Any]) -> dict[str, Any]:
        return _refuse_secrets(value, "options")

    def to_fsspec(self) -> dict[str, Any]:
        """The keyword arguments fsspec's filesystem takes (secrets revealed only here)."""
        out: dict[str, Any] = dict(self.options)
        client = dict(self.client_kwargs)
        if self.endpoint_url:
            client["endpoint_url"] = self.endpoint_url
        if self.region:
            client["region_name"] = self.region
        if client:
            out["client_kwargs"] = client
        if self.profile:
            out["profile"] = self.profile
        if self.anon is not None:
            out["anon"] = self.anon
        for name in ("key", "secret", "token"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value.get_secret_value()
        return out

    def secrets(self) -> list[str]:
        """The secret values (for redacting them from anything written)."""
        return [
            v.get_secret_value()
            for v in (self.key, self.secret, self.token)
            if v is not None and v.get_secret_value()
        ]

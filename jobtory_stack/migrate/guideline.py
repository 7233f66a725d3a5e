"""The deployment guideline's eight planned steps, by name (standard library only: the
CLI lists them without loading the migration, which needs boto3)."""

from __future__ import annotations

STEP_NAMES = (
    "domain",
    "hosted zone",
    "certificate",
    "load balancer",
    "caddy alb mode",
    "auto scaling",
    "ssm + hosts",
    "google oauth",
)

CLOUDFLARE_REFUSAL = (
    "Cloudflare Registrar requires Cloudflare DNS: a domain registered there cannot have "
    "its NS delegated to Route 53, so the hosted zone (step 2) and ACM's DNS validation "
    "(step 3) cannot work. Transfer the domain to a registrar that lets you set NS "
    "records (porkbun, gabia, Route 53 Domains) and set domain.registrar accordingly"
)

"""Linking mail to CRM records, explainably.

- `cascade` (over `facts`): the matching cascade, plain facts in, link decisions out;
- `run`: runs it over the database (after each sync batch, on demand, retroactively);
- `reads` / `writes`: its reads and bulk writes; `crmcache`: the CRM kept in memory;
- `retrolink`: which threads a new or changed record concerns; `suggestions`: contacts it
  creates and suggests; `curation`: what people decide by hand (manual links, review queue).
"""

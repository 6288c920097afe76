"""CRM records: companies, contacts, opportunities, and files of them.

- `records`: companies and contacts, and the rules every CRM write obeys;
- `opportunities`: deals, their reference codes, stages and contacts;
- `dedupe`: duplicate contacts; `views`: read-only views for output and export;
- `csvio` (over `csvformat`): import and export of spreadsheet files.
"""

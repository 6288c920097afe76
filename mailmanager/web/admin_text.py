"""The admin pages' words, in French and English (`web.i18n`), including what each kind of
mailbox error means and how to fix it (`services.mailboxhealth.ERROR_KINDS`)."""

from __future__ import annotations

from mailmanager.web import i18n

i18n.add(
    {
        "admin.title": ("Administration", "Administration"),
        "admin.sections": ("Sections de l'administration", "Admin sections"),
        "admin.mailboxes": ("Boîtes aux lettres", "Mailboxes"),
        "admin.quarantine": ("Quarantaine", "Quarantine"),
        "admin.users": ("Utilisateurs et rôles", "Users and roles"),
        "admin.outbox": ("Boîte d'envoi", "Outbox"),
        "admin.import": ("Import CRM", "CRM import"),
        "admin.none": ("Rien à afficher.", "Nothing to show."),
        # mailboxes
        "admin.mb.name": ("Boîte", "Mailbox"),
        "admin.mb.connector": ("Connecteur", "Connector"),
        "admin.mb.owner": ("Propriétaire", "Owner"),
        "admin.mb.state": ("État", "State"),
        "admin.mb.last_sync": ("Dernière synchro", "Last sync"),
        "admin.mb.last_success": ("Dernière réussite", "Last success"),
        "admin.mb.messages": ("Messages", "Messages"),
        "admin.mb.quarantined": ("En quarantaine", "Quarantined"),
        "admin.mb.never": ("jamais", "never"),
        "admin.mb.actions": ("Actions", "Actions"),
        "admin.mb.test": ("Tester la connexion", "Test the connection"),
        "admin.mb.sync": ("Synchroniser maintenant", "Sync now"),
        "admin.mb.see_quarantine": ("Voir les éléments", "See the items"),
        "admin.state.ok": ("OK", "OK"),
        "admin.state.error": ("En erreur", "Failing"),
        "admin.state.never": ("Jamais synchronisée", "Never synced"),
        "admin.state.disabled": ("Désactivée", "Disabled"),
        "admin.state.syncing": ("Synchronisation en cours", "Syncing now"),
        "admin.mb.error": ("Dernière erreur", "Last error"),
        "admin.mb.fix": ("Que faire :", "What to do:"),
        "admin.mb.detail": ("Message exact", "Exact message"),
        "admin.mb.syncing_by": ("par le processus {who}", "by process {who}"),
        "admin.err.config": (
            "Les réglages de cette boîte sont incorrects ou incomplets.",
            "This mailbox's settings are wrong or incomplete.",
        ),
        "admin.fix.config": (
            "Corrigez la clé nommée dans le message exact dans le fichier de configuration, "
            "puis lancez « Tester la connexion ».",
            "Fix the key named in the exact message in the configuration file, then run "
            "“Test the connection”.",
        ),
        "admin.err.auth": (
            "Le fournisseur refuse l'identifiant, le mot de passe ou le jeton.",
            "The provider refuses the login, password or token.",
        ),
        "admin.fix.auth": (
            "Vérifiez l'identifiant et le secret (ou relancez « mailmanager auth NOM » pour "
            "un compte OAuth), puis testez la connexion.",
            "Check the login and secret (or run “mailmanager auth NAME” again for an OAuth "
            "account), then test the connection.",
        ),
        "admin.err.transient": (
            "Le serveur était injoignable, lent ou limitait les accès.",
            "The server was unreachable, slow or throttling.",
        ),
        "admin.fix.transient": (
            "En général rien : la prochaine synchro réessaie. Si cela dure, testez la "
            "connexion pour voir quelle étape échoue (réseau, pare-feu, nom du serveur).",
            "Usually nothing: the next sync retries. If it lasts, test the connection to "
            "see which step fails (network, firewall, server name).",
        ),
        "admin.err.unsupported": (
            "Le serveur ne propose pas une fonction dont le connecteur a besoin.",
            "The server lacks something the connector needs.",
        ),
        "admin.fix.unsupported": (
            "Le message exact nomme la fonction manquante : activez-la sur le serveur ou "
            "choisissez un autre connecteur pour cette boîte.",
            "The exact message names what is missing: enable it on the server or use another "
            "connector for this mailbox.",
        ),
        "admin.err.provider": (
            "Le fournisseur a refusé une demande de la synchronisation.",
            "The provider refused a request of the sync.",
        ),
        "admin.fix.provider": (
            "Lisez le message exact du fournisseur ; testez la connexion pour voir l'étape "
            "en cause.",
            "Read the provider's exact message; test the connection to see which step fails.",
        ),
        "admin.err.internal": (
            "Une erreur interne a arrêté la synchronisation de cette boîte.",
            "An internal error stopped this mailbox's sync.",
        ),
        "admin.fix.internal": (
            "Le journal du démon en dit plus : signalez-la avec le message exact si elle revient.",
            "The daemon's log tells more: report it with the exact message if it comes back.",
        ),
        # sync now
        "admin.sync.running": (
            "Synchronisation de « {name} » en cours depuis {since}. Rechargez la page pour "
            "voir le résultat.",
            "Syncing “{name}” since {since}. Reload the page to see the result.",
        ),
        "admin.sync.reload": ("Recharger", "Reload"),
        "admin.sync.ok": (
            "« {name} » synchronisée à {at} : {fetched} lus, {new} nouveaux messages.",
            "“{name}” synced at {at}: {fetched} fetched, {new} new messages.",
        ),
        "admin.sync.error": (
            "La synchronisation de « {name} » a échoué à {at} : {error}",
            "Syncing “{name}” failed at {at}: {error}",
        ),
        "admin.sync.skipped": (
            "« {name} » n'a pas été synchronisée : un autre processus la synchronisait déjà.",
            "“{name}” was not synced: another process was already syncing it.",
        ),
        "admin.sync.refused_running": (
            "« {name} » est déjà en cours de synchronisation depuis cette page.",
            "“{name}” is already being synced from this page.",
        ),
        "admin.sync.refused_leased": (
            "« {name} » est en cours de synchronisation par un autre processus ({who}) : "
            "réessayez quand il aura fini.",
            "“{name}” is being synced by another process ({who}): try again when it is done.",
        ),
        "admin.sync.started": (
            "Synchronisation de « {name} » lancée.",
            "Sync of “{name}” started.",
        ),
        # mailbox test
        "admin.test.title": ("Test de « {name} »", "Test of “{name}”"),
        "admin.test.intro": (
            "Les étapes de « mailmanager mailbox test {name} », dans l'ordre :",
            "The steps of “mailmanager mailbox test {name}”, in order:",
        ),
        "admin.test.step": ("Étape", "Step"),
        "admin.test.result": ("Résultat", "Result"),
        "admin.test.detail": ("Détail", "Detail"),
        "admin.test.pass": ("réussie", "passed"),
        "admin.test.fail": ("ÉCHEC", "FAILED"),
        "admin.test.all_ok": (
            "Toutes les étapes ont réussi.",
            "Every step passed.",
        ),
        "admin.test.failed": (
            "Une étape a échoué : son détail dit quoi corriger.",
            "A step failed: its detail says what to fix.",
        ),
        "admin.back": ("Retour aux boîtes", "Back to the mailboxes"),
        # quarantine
        "admin.q.intro": (
            "Ce que la synchronisation n'a pas pu enregistrer comme message, gardé avec sa "
            "raison (rien n'est jeté).",
            "What the sync could not store as a message, kept with its reason (nothing is "
            "dropped).",
        ),
        "admin.q.filter": ("Boîte", "Mailbox"),
        "admin.q.all": ("Toutes", "All"),
        "admin.q.show": ("Afficher", "Show"),
        "admin.q.id": ("N°", "No."),
        "admin.q.folder": ("Dossier", "Folder"),
        "admin.q.reason": ("Raison", "Reason"),
        "admin.q.size": ("Taille", "Size"),
        "admin.q.when": ("Mis en quarantaine", "Quarantined"),
        "admin.q.raw": ("Fichier brut", "Raw file"),
        "admin.q.download": ("Télécharger n° {id}", "Download no. {id}"),
        "admin.q.not_kept": ("non conservé", "not kept"),
        "admin.q.count": ("{n} élément(s).", "{n} item(s)."),
        "admin.q.more": (
            "Seuls les {n} premiers sont affichés ; « mailmanager quarantine list » les "
            "donne tous.",
            "Only the first {n} are shown; “mailmanager quarantine list” gives them all.",
        ),
        "admin.q.bytes": ("{n} octets", "{n} bytes"),
        # users
        "admin.u.readonly": (
            "Les rôles viennent du fichier de configuration (tables [[users]] : role, "
            "manager) : modifiez-le puis redémarrez « mailmanager web » pour les changer.",
            "Roles come from the configuration file ([[users]] tables: role, manager): edit "
            "it, then restart “mailmanager web”, to change them.",
        ),
        "admin.u.name": ("Nom", "Name"),
        "admin.u.email": ("Adresse", "Address"),
        "admin.u.role": ("Rôle", "Role"),
        "admin.u.manager": ("Responsable", "Manager"),
        "admin.u.locale": ("Langue", "Language"),
        "admin.u.timezone": ("Fuseau", "Time zone"),
        "admin.u.mailboxes": ("Boîtes", "Mailboxes"),
        "admin.role.salesperson": ("Commercial", "Salesperson"),
        "admin.role.manager": ("Responsable", "Manager"),
        "admin.role.admin": ("Administrateur", "Admin"),
        # outbox
        "admin.o.intro": (
            "Les e-mails en attente d'envoi ou en échec (relances, résumés, liens de connexion).",
            "Emails waiting to be sent or failed (reminders, digests, sign-in links).",
        ),
        "admin.o.status": ("État", "Status"),
        "admin.o.recipient": ("Destinataire", "Recipient"),
        "admin.o.subject": ("Objet", "Subject"),
        "admin.o.attempts": ("Tentatives", "Attempts"),
        "admin.o.next": ("Prochain essai", "Next attempt"),
        "admin.o.error": ("Dernière erreur", "Last error"),
        "admin.o.retry": ("Réessayer", "Retry"),
        "admin.o.retried": (
            "E-mail n° {id} remis en file : le prochain envoi du démon le tentera.",
            "Email no. {id} queued again: the daemon's next flush will try it.",
        ),
        "admin.o.st.pending": ("en attente", "pending"),
        "admin.o.st.sending": ("en cours d'envoi", "sending"),
        "admin.o.st.dead": ("en échec", "failed"),
        # CRM import
        "admin.i.intro": (
            "Importez des sociétés, contacts ou opportunités depuis un fichier CSV ou Excel "
            "(.xlsx), avec les règles de « mailmanager import ». Le rapport de l'essai "
            "s'affiche d'abord ; rien n'est écrit avant votre confirmation.",
            "Import companies, contacts or opportunities from a CSV file or an Excel workbook "
            "(.xlsx), with the rules of “mailmanager import”. The dry run's report comes "
            "first; nothing is written until you confirm.",
        ),
        "admin.i.kind": ("Type de fiches", "Kind of records"),
        "admin.i.kind.companies": ("Sociétés", "Companies"),
        "admin.i.kind.contacts": ("Contacts", "Contacts"),
        "admin.i.kind.opportunities": ("Opportunités", "Opportunities"),
        "admin.i.file": (
            "Fichier (CSV ou .xlsx, {mb} Mo au plus)",
            "File (CSV or .xlsx, {mb} MB at most)",
        ),
        "admin.i.sheet": (
            "Feuille Excel (facultatif : la première par défaut)",
            "Excel sheet (optional: the first one by default)",
        ),
        "admin.i.check": ("Vérifier le fichier", "Check the file"),
        "admin.i.report": ("Rapport de l'essai : {file}", "Dry-run report: {file}"),
        "admin.i.result": ("Import effectué : {file}", "Import done: {file}"),
        "admin.i.counts": (
            "{rows} lignes : {created} à créer, {updated} à mettre à jour, {unchanged} "
            "inchangées, {merged} fusionnées.",
            "{rows} rows: {created} to create, {updated} to update, {unchanged} unchanged, "
            "{merged} merged.",
        ),
        "admin.i.done_counts": (
            "{rows} lignes : {created} créées, {updated} mises à jour, {unchanged} "
            "inchangées, {merged} fusionnées.",
            "{rows} rows: {created} created, {updated} updated, {unchanged} unchanged, "
            "{merged} merged.",
        ),
        "admin.i.source_xlsx": ("Classeur Excel.", "Excel workbook."),
        "admin.i.source_csv": (
            "CSV, séparateur « {delimiter} », encodage {encoding}.",
            "CSV, delimiter “{delimiter}”, encoding {encoding}.",
        ),
        "admin.i.ignored": ("Colonnes ignorées", "Ignored columns"),
        "admin.i.notes": ("Remarques", "Notes"),
        "admin.i.errors": ("Erreurs", "Errors"),
        "admin.i.line": ("Ligne", "Line"),
        "admin.i.problem": ("Problème", "Problem"),
        "admin.i.blocked": (
            "Rien ne peut être importé tant que ces lignes sont fausses : corrigez le fichier "
            "et envoyez-le à nouveau.",
            "Nothing can be imported while these lines are wrong: fix the file and upload it "
            "again.",
        ),
        "admin.i.apply": ("Importer pour de vrai", "Import for real"),
        "admin.i.discard": ("Abandonner", "Discard"),
        "admin.i.discarded": (
            "Fichier abandonné : rien n'a été importé.",
            "File discarded: nothing was imported.",
        ),
        "admin.i.again": ("Importer un autre fichier", "Import another file"),
        "admin.i.refused": ("Fichier refusé : {why}", "File refused: {why}"),
    }
)

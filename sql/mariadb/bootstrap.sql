-- ils-redact layer for MariaDB: the layer database and its bookkeeping.
--
-- Run first, before any account, role or grant, so that install can record what it is
-- about to create before it creates it (MariaDB commits each DDL statement on its own:
-- an interrupted install must know what it did).  Every statement is idempotent; the
-- placeholders in braces are filled with quoted identifiers before it runs.

CREATE DATABASE IF NOT EXISTS {layer} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;

-- What install created or changed, with the prior state of everything it touched, so
-- that uninstall undoes exactly that.  Rows are written before the change they describe.
CREATE TABLE IF NOT EXISTS {layer}.installed_object (
    id           BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    kind         VARCHAR(32) NOT NULL,
    object       VARCHAR(700) NOT NULL,
    detail       JSON NOT NULL,
    prior        JSON NULL,
    installed_by VARCHAR(300) NOT NULL,
    installed_at DATETIME(6) NOT NULL,
    UNIQUE KEY installed_object_object (object)
) ENGINE=InnoDB;

CREATE TABLE IF NOT EXISTS {layer}.meta (
    `key`  VARCHAR(64) NOT NULL PRIMARY KEY,
    value  TEXT NOT NULL
) ENGINE=InnoDB;

-- One row per install, upgrade or uninstall that changed something.
CREATE TABLE IF NOT EXISTS {layer}.install_log (
    id            BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    action        VARCHAR(32) NOT NULL,
    tool_version  VARCHAR(32) NOT NULL,
    layer_version INT NOT NULL,
    rules_sha256  CHAR(64) NOT NULL,
    changes       INT NOT NULL,
    by_user       VARCHAR(300) NOT NULL,
    at            DATETIME(6) NOT NULL
) ENGINE=InnoDB;

-- Progress of each run of a plan: a run that never finished is reported by `status`,
-- and the next `install` finishes it (the plan is computed again from what exists).
CREATE TABLE IF NOT EXISTS {layer}.install_run (
    id           BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    action       VARCHAR(32) NOT NULL,
    plan_sha256  CHAR(64) NOT NULL,
    steps_total  INT NOT NULL,
    steps_done   INT NOT NULL DEFAULT 0,
    last_step    VARCHAR(700) NULL,
    by_user      VARCHAR(300) NOT NULL,
    started_at   DATETIME(6) NOT NULL,
    finished_at  DATETIME(6) NULL
) ENGINE=InnoDB;

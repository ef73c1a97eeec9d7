-- The SQLite schema that release 5609fa7 made (its core/models.py through SQLModel's create_all),
-- exactly as sqlite_master holds it: a database made by that release, before migrations existed.
-- Regenerate: models of `git show 5609fa7:core/models.py`, SQLModel.metadata.create_all on a new
-- file, then `SELECT sql FROM sqlite_master` (tables first, then indexes).
CREATE TABLE project (
	id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, 
	name VARCHAR NOT NULL, 
	labels JSON NOT NULL, 
	settings JSON NOT NULL, 
	data_version INTEGER NOT NULL, 
	version INTEGER NOT NULL, 
	latest_run_id INTEGER, 
	created_at DATETIME NOT NULL
);

CREATE TABLE record (
	id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, 
	project_id INTEGER NOT NULL, 
	external_id VARCHAR NOT NULL, 
	text VARCHAR NOT NULL, 
	meta JSON NOT NULL, 
	n_answers INTEGER NOT NULL, 
	complete BOOLEAN NOT NULL, 
	created_at DATETIME NOT NULL, 
	UNIQUE (project_id, external_id), 
	FOREIGN KEY(project_id) REFERENCES project (id) ON DELETE CASCADE
);

CREATE TABLE modelrun (
	id INTEGER NOT NULL, 
	project_id INTEGER NOT NULL, 
	created_at DATETIME NOT NULL, 
	n_labels INTEGER NOT NULL, 
	strategy VARCHAR NOT NULL, 
	metrics JSON NOT NULL, 
	label_counts JSON NOT NULL, 
	duration_seconds FLOAT NOT NULL, 
	embedding_model VARCHAR NOT NULL, 
	model_blob BLOB, 
	PRIMARY KEY (id), 
	FOREIGN KEY(project_id) REFERENCES project (id) ON DELETE CASCADE
);

CREATE TABLE contextbinding (
	context VARCHAR NOT NULL, 
	project_id INTEGER NOT NULL, 
	PRIMARY KEY (context), 
	FOREIGN KEY(project_id) REFERENCES project (id) ON DELETE CASCADE
);

CREATE TABLE annotation (
	id INTEGER NOT NULL, 
	record_id INTEGER NOT NULL, 
	project_id INTEGER NOT NULL, 
	annotator VARCHAR NOT NULL, 
	label VARCHAR NOT NULL, 
	source VARCHAR NOT NULL, 
	shown_at DATETIME, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (record_id, annotator), 
	FOREIGN KEY(record_id) REFERENCES record (id) ON DELETE CASCADE, 
	FOREIGN KEY(project_id) REFERENCES project (id) ON DELETE CASCADE
);

CREATE TABLE skip (
	id INTEGER NOT NULL, 
	record_id INTEGER NOT NULL, 
	project_id INTEGER NOT NULL, 
	annotator VARCHAR NOT NULL, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (record_id, annotator), 
	FOREIGN KEY(record_id) REFERENCES record (id) ON DELETE CASCADE, 
	FOREIGN KEY(project_id) REFERENCES project (id) ON DELETE CASCADE
);

CREATE TABLE lease (
	id INTEGER NOT NULL, 
	record_id INTEGER NOT NULL, 
	project_id INTEGER NOT NULL, 
	annotator VARCHAR NOT NULL, 
	shown_at DATETIME NOT NULL, 
	expires_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (record_id, annotator), 
	FOREIGN KEY(record_id) REFERENCES record (id) ON DELETE CASCADE, 
	FOREIGN KEY(project_id) REFERENCES project (id) ON DELETE CASCADE
);

CREATE TABLE queueitem (
	id INTEGER NOT NULL, 
	project_id INTEGER NOT NULL, 
	position INTEGER NOT NULL, 
	record_id INTEGER NOT NULL, 
	predicted_label VARCHAR, 
	confidence FLOAT, 
	reason VARCHAR NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(project_id) REFERENCES project (id) ON DELETE CASCADE, 
	FOREIGN KEY(record_id) REFERENCES record (id) ON DELETE CASCADE
);

CREATE TABLE embedding (
	record_id INTEGER NOT NULL, 
	project_id INTEGER NOT NULL, 
	model VARCHAR NOT NULL, 
	vector BLOB NOT NULL, 
	PRIMARY KEY (record_id, model), 
	FOREIGN KEY(record_id) REFERENCES record (id) ON DELETE CASCADE, 
	FOREIGN KEY(project_id) REFERENCES project (id) ON DELETE CASCADE
);

CREATE TABLE modelrunreport (
	run_id INTEGER NOT NULL, 
	project_id INTEGER NOT NULL, 
	per_class_f1 JSON NOT NULL, 
	support JSON NOT NULL, 
	fingerprint VARCHAR NOT NULL, 
	PRIMARY KEY (run_id), 
	FOREIGN KEY(run_id) REFERENCES modelrun (id) ON DELETE CASCADE, 
	FOREIGN KEY(project_id) REFERENCES project (id) ON DELETE CASCADE
);

CREATE UNIQUE INDEX ix_project_name ON project (name);

CREATE INDEX ix_record_project_id ON record (project_id);

CREATE INDEX ix_record_complete ON record (complete);

CREATE INDEX ix_modelrun_project_id ON modelrun (project_id);

CREATE INDEX ix_contextbinding_project_id ON contextbinding (project_id);

CREATE INDEX ix_annotation_record_id ON annotation (record_id);

CREATE INDEX ix_annotation_project_annotator ON annotation (project_id, annotator, created_at);

CREATE INDEX ix_annotation_project_id ON annotation (project_id);

CREATE INDEX ix_skip_project_id ON skip (project_id);

CREATE INDEX ix_skip_annotator ON skip (annotator);

CREATE INDEX ix_skip_record_id ON skip (record_id);

CREATE INDEX ix_lease_annotator ON lease (annotator);

CREATE INDEX ix_lease_record_id ON lease (record_id);

CREATE INDEX ix_lease_project_id ON lease (project_id);

CREATE INDEX ix_lease_expires_at ON lease (expires_at);

CREATE INDEX ix_queueitem_project_id ON queueitem (project_id);

CREATE INDEX ix_queueitem_project_position ON queueitem (project_id, position);

CREATE INDEX ix_queueitem_record_id ON queueitem (record_id);

CREATE INDEX ix_embedding_project_id ON embedding (project_id);

CREATE INDEX ix_modelrunreport_project_id ON modelrunreport (project_id);

import assert from 'node:assert/strict';
import { describeDatabaseUrl } from '../src/config';
import { databaseIdentity, isSameDatabase, maskConnectionSecrets } from '../src/db/conninfo';
import { explainDatabaseError } from '../src/db/pool';

describe('connection strings in messages (pure)', () => {
  describe('describeDatabaseUrl masks every password', () => {
    const cases: Array<[string, string, string]> = [
      ['user info', 'postgres://app:s3cret@db.internal:5432/gotong', 'postgres://app:***@db.internal:5432/gotong'],
      ['user info with an @ in the password', 'postgres://app:p@ss@db/gotong', 'postgres://app:***@db/gotong'],
      ['user info with a space in the password', 'postgres://app:pa ss@db/gotong', 'postgres://app:***@db/gotong'],
      ['?password=', 'postgres://app@db/gotong?password=s3cret&sslmode=require', 'postgres://app@db/gotong?password=***&sslmode=require'],
      ['?sslpassword=', 'postgresql://app@db/gotong?sslmode=verify-full&sslpassword=s3cret', 'postgresql://app@db/gotong?sslmode=verify-full&sslpassword=***'],
      ['both in one', 'postgres://app:one@db/gotong?PASSWORD=two', 'postgres://app:***@db/gotong?PASSWORD=***'],
      ['key=value conninfo', 'host=db port=5432 user=app password=s3cret dbname=gotong', 'host=db port=5432 user=app password=*** dbname=gotong'],
      ['quoted conninfo value', "host=db password='it is s3cret' dbname=gotong", 'host=db password=*** dbname=gotong'],
      ['conninfo with spaces around =', 'host=db sslpassword = s3cret', 'host=db sslpassword=***'],
      ['a URL only the driver accepts (no host, socket in host=)', 'postgres://app:s3cret@/gotong?host=/var/run/postgresql', 'postgres://app:***@/gotong?host=/var/run/postgresql'],
      ['no password at all', 'postgres://postgres@127.0.0.1:1/gotong_demo', 'postgres://postgres@127.0.0.1:1/gotong_demo'],
    ];
    for (const [what, input, expected] of cases) {
      it(what, () => {
        const shown = describeDatabaseUrl(input);
        assert.equal(shown, expected);
        assert.doesNotMatch(shown, /s3cret|one|two|pa ss|p@ss/);
      });
    }
    it('something that is no connection string at all', () => {
      assert.equal(describeDatabaseUrl('::not a url::'), '(unparseable connection string)');
    });
  });

  describe('maskConnectionSecrets in free text (driver errors)', () => {
    it('masks URLs, query parameters and key=value pairs inside a sentence', () => {
      const text =
        'could not connect with postgres://app:s3cret@db/x?sslpassword=k3y (also tried "host=db password=hunter2 user=app"); ' +
        "password='quoted s3cret' was refused";
      const masked = maskConnectionSecrets(text);
      assert.doesNotMatch(masked, /s3cret|k3y|hunter2/);
      assert.match(masked, /postgres:\/\/app:\*\*\*@db\/x\?sslpassword=\*\*\*/);
      assert.match(masked, /host=db password=\*\*\* user=app/);
    });
    it('leaves ordinary words alone', () => {
      const text = 'password authentication failed for user "app"';
      assert.equal(maskConnectionSecrets(text), text);
    });
  });

  it('explainDatabaseError masks a password a driver message quotes', () => {
    const err = Object.assign(new Error('invalid connection option in postgres://app:s3cret@db/x?password=again'), { code: 'XX000' });
    const line = explainDatabaseError(err, 'postgres://app:s3cret@db/x');
    assert.doesNotMatch(line, /s3cret|again/);
    assert.equal(line, 'PostgreSQL error at postgres://app:***@db/x: invalid connection option in postgres://app:***@db/x?password=***');
  });
});

describe('which database a connection string names (pure)', () => {
  const env = { USER: 'someone' };
  it('reads host, port and database as the driver does, with its defaults', () => {
    assert.deepEqual(databaseIdentity('postgres://u@db.example:6543/app', env), { host: 'db.example', port: 6543, database: 'app' });
    assert.deepEqual(databaseIdentity('postgres://u@db.example/app', env), { host: 'db.example', port: 5432, database: 'app' });
    assert.deepEqual(databaseIdentity('postgres://u@db.example', env), { host: 'db.example', port: 5432, database: 'u' });
    assert.deepEqual(databaseIdentity('postgres:///app', env), { host: 'local', port: 5432, database: 'app' });
    assert.deepEqual(databaseIdentity('postgres://u@h/app?host=/var/run/postgresql&port=5433', env), { host: 'local', port: 5433, database: 'app' });
    assert.deepEqual(databaseIdentity('postgres://u@db/app', { ...env, PGPORT: '6000' }), { host: 'db', port: 6000, database: 'app' });
  });
  it('the same database, however it is spelled', () => {
    const base = 'postgres://postgres@127.0.0.1:5432/gotong';
    for (const other of [
      'postgres://postgres@localhost/gotong',
      'postgresql://app:secret@[::1]:5432/gotong',
      'postgres://postgres@127.0.0.1/%67otong',
      'postgres://postgres@LOCALHOST:5432/gotong?sslmode=disable',
      'postgres://x@/gotong?host=127.0.0.1',
      'postgres://x@somewhere/gotong?host=localhost&port=5432',
      'postgres://postgres@127.0.0.2:5432/gotong',
    ]) {
      assert.ok(isSameDatabase(base, other, env), other);
    }
  });
  it('different databases', () => {
    const base = 'postgres://postgres@127.0.0.1:5432/gotong';
    for (const other of [
      'postgres://postgres@127.0.0.1:5432/gotong_demo',
      'postgres://postgres@127.0.0.1:5433/gotong',
      'postgres://postgres@db.example:5432/gotong',
      'postgres://postgres@127.0.0.1:5432/Gotong',
    ]) {
      assert.ok(!isSameDatabase(base, other, env), other);
    }
  });
});

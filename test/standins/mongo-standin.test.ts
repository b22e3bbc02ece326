import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { MongoClient, MongoServerError, ObjectId, type Db } from 'mongodb';
import { startMongoStandin, type MongoStandin } from './mongo-standin.js';

interface Item {
  _id?: ObjectId | number | string;
  name?: string;
  n?: number;
  tags?: string[];
  meta?: { color?: string; size?: number };
  at?: Date;
}

describe('mongo stand-in with the real mongodb driver', () => {
  let standin: MongoStandin;
  let client: MongoClient;
  let db: Db;

  beforeAll(async () => {
    standin = await startMongoStandin();
    client = new MongoClient(standin.uri, { serverSelectionTimeoutMS: 5_000, maxPoolSize: 5 });
    await client.connect();
    db = client.db('standin_test');
  });

  afterAll(async () => {
    await client?.close();
    await standin?.close();
  });

  it('connects, pings and reports a standalone 7.0 server', async () => {
    expect(standin.uri).toBe(`mongodb://127.0.0.1:${standin.port}/?directConnection=true`);
    expect(await db.command({ ping: 1 })).toEqual({ ok: 1 });
    const info = await db.admin().buildInfo();
    expect(info.version).toBe('7.0.0');
    const hello = await db.admin().command({ hello: 1 });
    expect(hello.isWritablePrimary).toBe(true);
    expect(hello.maxWireVersion).toBe(21);
    expect(hello.setName).toBeUndefined();
    expect(standin.connectionCount()).toBeGreaterThanOrEqual(1);
  });

  it('rejects unknown commands with CommandNotFound', async () => {
    const err = await db.command({ frobnicate: 1 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MongoServerError);
    expect((err as MongoServerError).code).toBe(59);
    expect((err as MongoServerError).message).toBe("no such command: 'frobnicate'");
  });

  it('inserts and finds with sort, skip, limit and projection', async () => {
    const coll = db.collection<Item>('basic');
    const one = await coll.insertOne({ name: 'alpha', n: 3, meta: { color: 'red', size: 1 } });
    expect(one.acknowledged).toBe(true);
    expect(one.insertedId).toBeInstanceOf(ObjectId);
    const many = await coll.insertMany([
      { name: 'beta', n: 1, meta: { color: 'blue', size: 2 } },
      { name: 'gamma', n: 5, meta: { color: 'red', size: 3 } },
      { name: 'delta', n: 2, meta: { color: 'green', size: 4 } },
      { name: 'epsilon', n: 4, meta: { color: 'red', size: 5 } },
    ]);
    expect(many.insertedCount).toBe(4);
    expect(Object.keys(many.insertedIds)).toHaveLength(4);

    const sorted = await coll.find({}, { projection: { _id: 0, name: 1 } }).sort({ n: -1 }).skip(1).limit(2).toArray();
    expect(sorted).toEqual([{ name: 'epsilon' }, { name: 'alpha' }]);

    const reds = await coll.find({ 'meta.color': 'red' }).sort({ name: 1 }).project<{ name: string; meta: { size: number } }>({ name: 1, 'meta.size': 1 }).toArray();
    expect(reds.map((d) => d.name)).toEqual(['alpha', 'epsilon', 'gamma']);
    expect(reds.map((d) => d.meta)).toEqual([{ size: 1 }, { size: 5 }, { size: 3 }]);
    expect(reds.every((d) => '_id' in d)).toBe(true);

    const excluded = await coll.findOne({ name: 'beta' }, { projection: { meta: 0 } });
    expect(excluded).not.toBeNull();
    expect(Object.keys(excluded ?? {}).sort()).toEqual(['_id', 'n', 'name']);

    const byId = await coll.findOne({ _id: one.insertedId });
    expect(byId?.name).toBe('alpha');
    expect(byId?._id).toEqual(one.insertedId);
  });

  it('stores copies: mutating returned or inserted objects does not change the store', async () => {
    const coll = db.collection<Item>('copies');
    const doc: Item = { name: 'orig', tags: ['a'] };
    await coll.insertOne(doc);
    doc.tags?.push('mutated');
    const fetched = await coll.findOne({ name: 'orig' });
    expect(fetched?.tags).toEqual(['a']);
    fetched?.tags?.push('again');
    expect((await coll.findOne({ name: 'orig' }))?.tags).toEqual(['a']);
  });

  it('streams a cursor across several getMore batches', async () => {
    const coll = db.collection<{ i: number }>('many');
    await coll.insertMany(Array.from({ length: 250 }, (_, i) => ({ i })));
    const cursor = coll.find({}, { batchSize: 50 }).sort({ i: 1 });
    const seen: number[] = [];
    for await (const d of cursor) seen.push(d.i);
    expect(seen).toHaveLength(250);
    expect(seen[0]).toBe(0);
    expect(seen[249]).toBe(249);
    expect(seen.every((v, idx) => v === idx)).toBe(true);

    // Raw protocol view: the first batch holds 50 and a live cursor id is returned.
    const first = await db.command({ find: 'many', filter: {}, sort: { i: 1 }, batchSize: 50 });
    expect(first.cursor.firstBatch).toHaveLength(50);
    expect(first.cursor.id.toString()).not.toBe('0');
    const more = await db.command({ getMore: first.cursor.id, collection: 'many', batchSize: 200 });
    expect(more.cursor.nextBatch).toHaveLength(200);
    expect(more.cursor.nextBatch[0].i).toBe(50);
    expect(more.cursor.id.toString()).toBe('0');
    const gone = await db.command({ getMore: first.cursor.id, collection: 'many' }).catch((e: unknown) => e);
    expect((gone as MongoServerError).code).toBe(43);

    // A limit larger than the batch size still stops at the limit.
    const limited = await coll.find({ i: { $gte: 100 } }, { batchSize: 30 }).sort({ i: -1 }).limit(70).toArray();
    expect(limited).toHaveLength(70);
    expect(limited[0]?.i).toBe(249);
    expect(limited[69]?.i).toBe(180);
  });

  it('updateOne with $set/$inc, upsert, and updateMany', async () => {
    const coll = db.collection<Item>('updates');
    await coll.insertMany([
      { _id: 1, name: 'one', n: 10 },
      { _id: 2, name: 'two', n: 20 },
    ]);
    const r1 = await coll.updateOne({ _id: 1 }, { $set: { name: 'uno', 'meta.color': 'gold' }, $inc: { n: 5 } });
    expect(r1.matchedCount).toBe(1);
    expect(r1.modifiedCount).toBe(1);
    expect(await coll.findOne({ _id: 1 })).toEqual({ _id: 1, name: 'uno', n: 15, meta: { color: 'gold' } });

    const noop = await coll.updateOne({ _id: 1 }, { $set: { name: 'uno' } });
    expect(noop.matchedCount).toBe(1);
    expect(noop.modifiedCount).toBe(0);

    const up = await coll.updateOne(
      { name: 'three' },
      { $set: { n: 30 }, $setOnInsert: { tags: ['new'] } },
      { upsert: true },
    );
    expect(up.matchedCount).toBe(0);
    expect(up.upsertedCount).toBe(1);
    expect(up.upsertedId).toBeInstanceOf(ObjectId);
    const upserted = await coll.findOne({ _id: up.upsertedId as ObjectId });
    expect(upserted).toEqual({ _id: up.upsertedId, name: 'three', n: 30, tags: ['new'] });

    const again = await coll.updateOne({ name: 'three' }, { $set: { n: 31 }, $setOnInsert: { tags: ['other'] } }, { upsert: true });
    expect(again.upsertedCount).toBe(0);
    expect(again.modifiedCount).toBe(1);
    expect((await coll.findOne({ name: 'three' }))?.tags).toEqual(['new']);

    const many = await coll.updateMany({ n: { $gte: 20 } }, { $inc: { n: 1 }, $push: { tags: 'bumped' } });
    expect(many.matchedCount).toBe(2);
    expect(many.modifiedCount).toBe(2);
    const docs = await coll.find({}, { projection: { _id: 0, n: 1, tags: 1 } }).sort({ n: 1 }).toArray();
    expect(docs).toEqual([{ n: 15 }, { n: 21, tags: ['bumped'] }, { n: 32, tags: ['new', 'bumped'] }]);

    const replaced = await coll.replaceOne({ _id: 2 }, { name: 'zwei' });
    expect(replaced.modifiedCount).toBe(1);
    expect(await coll.findOne({ _id: 2 })).toEqual({ _id: 2, name: 'zwei' });

    const unset = await coll.updateOne({ _id: 1 }, { $unset: { meta: '' } });
    expect(unset.modifiedCount).toBe(1);
    expect(await coll.findOne({ _id: 1 })).toEqual({ _id: 1, name: 'uno', n: 15 });

    const immutable = await coll.updateOne({ _id: 1 }, { $set: { _id: 99 } }).catch((e: unknown) => e);
    expect((immutable as MongoServerError).code).toBe(66);
  });

  it('deleteOne and deleteMany', async () => {
    const coll = db.collection<Item>('deletes');
    await coll.insertMany([{ n: 1 }, { n: 2 }, { n: 3 }, { n: 4 }, { n: 5 }]);
    const one = await coll.deleteOne({ n: { $gt: 1 } });
    expect(one.deletedCount).toBe(1);
    const many = await coll.deleteMany({ n: { $gte: 3 } });
    expect(many.deletedCount).toBe(3);
    const rest = await coll.find({}).sort({ n: 1 }).toArray();
    expect(rest.map((d) => d.n)).toEqual([1]);
    const none = await coll.deleteMany({ n: 42 });
    expect(none.deletedCount).toBe(0);
  });

  it('findOneAndUpdate / findOneAndDelete return documents', async () => {
    const coll = db.collection<Item>('fam');
    await coll.insertMany([
      { _id: 'a', n: 1 },
      { _id: 'b', n: 2 },
    ]);
    const after = await coll.findOneAndUpdate({ _id: 'a' }, { $inc: { n: 10 } }, { returnDocument: 'after' });
    expect(after).toEqual({ _id: 'a', n: 11 });
    const before = await coll.findOneAndUpdate({ _id: 'a' }, { $set: { name: 'x' } }, { returnDocument: 'before' });
    expect(before).toEqual({ _id: 'a', n: 11 });
    const withMeta = await coll.findOneAndUpdate(
      { _id: 'c' },
      { $set: { n: 3 } },
      { upsert: true, returnDocument: 'after', includeResultMetadata: true },
    );
    expect(withMeta.value).toEqual({ _id: 'c', n: 3 });
    expect(withMeta.lastErrorObject?.upserted).toBe('c');
    expect(withMeta.lastErrorObject?.updatedExisting).toBe(false);
    const highest = await coll.findOneAndDelete({}, { sort: { n: -1 } });
    expect(highest).toEqual({ _id: 'a', n: 11, name: 'x' });
    expect(await coll.countDocuments()).toBe(2);
    const missing = await coll.findOneAndUpdate({ _id: 'zzz' }, { $set: { n: 1 } });
    expect(missing).toBeNull();
  });

  it('countDocuments and estimatedDocumentCount', async () => {
    const coll = db.collection<Item>('counts');
    await coll.insertMany(Array.from({ length: 12 }, (_, i) => ({ n: i, name: i % 2 ? 'odd' : 'even' })));
    expect(await coll.countDocuments()).toBe(12);
    expect(await coll.countDocuments({ name: 'odd' })).toBe(6);
    expect(await coll.countDocuments({ n: { $lt: 10 } }, { skip: 2, limit: 5 })).toBe(5);
    expect(await coll.countDocuments({ n: { $gt: 100 } })).toBe(0);
    expect(await coll.estimatedDocumentCount()).toBe(12);
    expect(await db.collection('never_created').countDocuments()).toBe(0);
  });

  it('unique index: duplicate insert fails with E11000', async () => {
    const coll = db.collection<{ email: string; org?: string }>('users');
    const name = await coll.createIndex({ email: 1 }, { unique: true });
    expect(name).toBe('email_1');
    expect(await coll.createIndex({ email: 1 }, { unique: true })).toBe('email_1');
    await coll.insertOne({ email: 'a@example.com' });
    const err = await coll.insertOne({ email: 'a@example.com' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MongoServerError);
    const mse = err as MongoServerError;
    expect(mse.code).toBe(11000);
    expect(mse.message).toBe(
      'E11000 duplicate key error collection: standin_test.users index: email_1 dup key: { email: "a@example.com" }',
    );
    expect(mse.keyValue).toEqual({ email: 'a@example.com' });
    expect(await coll.countDocuments()).toBe(1);

    // Updates that would collide are rejected too.
    await coll.insertOne({ email: 'b@example.com' });
    const upd = await coll.updateOne({ email: 'b@example.com' }, { $set: { email: 'a@example.com' } }).catch((e: unknown) => e);
    expect((upd as MongoServerError).code).toBe(11000);
    expect(await coll.countDocuments({ email: 'b@example.com' })).toBe(1);

    // _id is always unique.
    const dupId = await coll.insertMany([{ _id: 'same', email: 'c@x' } as never, { _id: 'same', email: 'd@x' } as never]).catch((e: unknown) => e);
    expect((dupId as MongoServerError).code).toBe(11000);
    expect(await coll.countDocuments({ email: 'c@x' })).toBe(1);
    expect(await coll.countDocuments({ email: 'd@x' })).toBe(0);

    const indexes = await coll.listIndexes().toArray();
    expect(indexes.map((i) => i.name)).toEqual(['_id_', 'email_1']);
    expect(indexes[1]?.unique).toBe(true);
    await coll.dropIndex('email_1');
    await coll.insertOne({ email: 'a@example.com' });
    expect(await coll.countDocuments({ email: 'a@example.com' })).toBe(2);
  });

  it('compound unique index enforces the key combination', async () => {
    const coll = db.collection<{ org: string; user: string }>('members');
    const name = await coll.createIndex({ org: 1, user: 1 }, { unique: true });
    expect(name).toBe('org_1_user_1');
    await coll.insertMany([
      { org: 'o1', user: 'u1' },
      { org: 'o1', user: 'u2' },
      { org: 'o2', user: 'u1' },
    ]);
    const err = await coll.insertOne({ org: 'o1', user: 'u2' }).catch((e: unknown) => e);
    expect((err as MongoServerError).code).toBe(11000);
    expect((err as MongoServerError).keyValue).toEqual({ org: 'o1', user: 'u2' });
    expect((err as MongoServerError).message).toContain('index: org_1_user_1 dup key: { org: "o1", user: "u2" }');
    expect(await coll.countDocuments()).toBe(3);

    // Unordered bulk insert keeps going after the duplicate.
    const bulk = await coll
      .insertMany(
        [
          { org: 'o3', user: 'u1' },
          { org: 'o1', user: 'u1' },
          { org: 'o3', user: 'u2' },
        ],
        { ordered: false },
      )
      .catch((e: unknown) => e);
    expect((bulk as MongoServerError).code).toBe(11000);
    expect(await coll.countDocuments({ org: 'o3' })).toBe(2);
  });

  it('supports $in, $or, $regex, $nin, $exists, $elemMatch and array equality', async () => {
    const coll = db.collection<Item>('queries');
    await coll.insertMany([
      { name: 'Apple', n: 1, tags: ['fruit', 'red'] },
      { name: 'banana', n: 2, tags: ['fruit', 'yellow'] },
      { name: 'Carrot', n: 3, tags: ['vegetable', 'orange'] },
      { name: 'date', n: 4 },
    ]);
    const names = async (filter: object): Promise<string[]> =>
      (await coll.find(filter).sort({ n: 1 }).toArray()).map((d) => d.name ?? '');

    expect(await names({ n: { $in: [1, 3, 9] } })).toEqual(['Apple', 'Carrot']);
    expect(await names({ $or: [{ n: 4 }, { tags: 'yellow' }] })).toEqual(['banana', 'date']);
    expect(await names({ name: { $regex: '^[a-c]', $options: 'i' } })).toEqual(['Apple', 'banana', 'Carrot']);
    expect(await names({ name: /^[a-c]/ })).toEqual(['banana']);
    expect(await names({ tags: 'fruit' })).toEqual(['Apple', 'banana']);
    expect(await names({ tags: ['fruit', 'red'] })).toEqual(['Apple']);
    expect(await names({ tags: { $nin: ['fruit'] } })).toEqual(['Carrot', 'date']);
    expect(await names({ tags: { $exists: false } })).toEqual(['date']);
    expect(await names({ n: { $not: { $gt: 2 } } })).toEqual(['Apple', 'banana']);
    expect(await names({ $nor: [{ n: 1 }, { n: 2 }] })).toEqual(['Carrot', 'date']);
    expect(await names({ 'tags.1': 'orange' })).toEqual(['Carrot']);
    expect(await names({ tags: { $all: ['fruit', 'red'] } })).toEqual(['Apple']);
    expect(await names({ tags: { $size: 2 }, n: { $ne: 1 } })).toEqual(['banana', 'Carrot']);
    expect(await names({ n: { $gt: 1, $lte: 3 } })).toEqual(['banana', 'Carrot']);

    const bad = await coll.find({ n: { $bogus: 1 } }).toArray().catch((e: unknown) => e);
    expect((bad as MongoServerError).code).toBe(2);
    expect((bad as MongoServerError).message).toBe('unknown operator: $bogus');
    const unsupported = await coll.find({ $where: 'true' }).toArray().catch((e: unknown) => e);
    expect((unsupported as MongoServerError).code).toBe(238);
  });

  it('round-trips ObjectId and Date values and sorts by Date', async () => {
    const coll = db.collection<Item & { ref?: ObjectId }>('dates');
    const ref = new ObjectId();
    const base = Date.UTC(2024, 0, 1);
    await coll.insertMany([
      { name: 'mid', at: new Date(base + 2_000), ref },
      { name: 'old', at: new Date(base) },
      { name: 'new', at: new Date(base + 5_000) },
    ]);
    const byRef = await coll.findOne({ ref: new ObjectId(ref.toHexString()) });
    expect(byRef?.name).toBe('mid');
    expect(byRef?.ref).toBeInstanceOf(ObjectId);
    expect(byRef?.ref?.equals(ref)).toBe(true);
    expect(byRef?.at).toBeInstanceOf(Date);
    expect(byRef?.at?.getTime()).toBe(base + 2_000);

    const asc = await coll.find({}).sort({ at: 1 }).toArray();
    expect(asc.map((d) => d.name)).toEqual(['old', 'mid', 'new']);
    const desc = await coll.find({ at: { $gt: new Date(base) } }).sort({ at: -1 }).toArray();
    expect(desc.map((d) => d.name)).toEqual(['new', 'mid']);

    // ObjectIds sort by their bytes, i.e. creation order for generated ids.
    const ids = asc.map((d) => d._id as ObjectId);
    const sortedIds = (await coll.find({}).sort({ _id: 1 }).toArray()).map((d) => (d._id as ObjectId).toHexString());
    expect(sortedIds).toEqual(ids.map((i) => i.toHexString()).sort());
  });

  it('aggregates with $match/$group/$sort/$project and distinct', async () => {
    const coll = db.collection<{ user: string; tokens: number }>('usage');
    await coll.insertMany([
      { user: 'ann', tokens: 10 },
      { user: 'bob', tokens: 5 },
      { user: 'ann', tokens: 7 },
      { user: 'cid', tokens: 1 },
    ]);
    const totals = await coll
      .aggregate<{ _id: string; total: number; calls: number }>([
        { $match: { tokens: { $gte: 2 } } },
        { $group: { _id: '$user', total: { $sum: '$tokens' }, calls: { $sum: 1 } } },
        { $sort: { total: -1 } },
      ])
      .toArray();
    expect(totals).toEqual([
      { _id: 'ann', total: 17, calls: 2 },
      { _id: 'bob', total: 5, calls: 1 },
    ]);
    const all = await coll.aggregate([{ $group: { _id: null, sum: { $sum: '$tokens' } } }]).toArray();
    expect(all).toEqual([{ _id: null, sum: 23 }]);
    const projected = await coll
      .aggregate([{ $sort: { tokens: 1 } }, { $skip: 1 }, { $limit: 2 }, { $project: { _id: 0, who: '$user', tokens: 1 } }])
      .toArray();
    expect(projected).toEqual([
      { tokens: 5, who: 'bob' },
      { tokens: 7, who: 'ann' },
    ]);
    expect((await coll.distinct('user')).sort()).toEqual(['ann', 'bob', 'cid']);
    const badStage = await coll.aggregate([{ $lookup: { from: 'x', as: 'y' } }]).toArray().catch((e: unknown) => e);
    expect((badStage as MongoServerError).code).toBe(238);
  });

  it('manages collections and databases', async () => {
    const other = client.db('standin_admin_test');
    await other.createCollection('c1');
    const dup = await other.createCollection('c1').catch((e: unknown) => e);
    expect((dup as MongoServerError).code).toBe(48);
    await other.collection('c2').insertOne({ x: 1 });
    const colls = (await other.listCollections({}, { nameOnly: true }).toArray()).map((c) => c.name).sort();
    expect(colls).toEqual(['c1', 'c2']);
    expect(await other.collection('c2').drop()).toBe(true);
    expect((await other.listCollections().toArray()).map((c) => c.name)).toEqual(['c1']);
    const dbs = await client.db().admin().listDatabases();
    expect(dbs.databases.map((d) => d.name)).toContain('standin_admin_test');
    expect(await other.dropDatabase()).toBe(true);
    const after = await client.db().admin().listDatabases();
    expect(after.databases.map((d) => d.name)).not.toContain('standin_admin_test');
  });

  it('handles several clients concurrently and close() drops their sockets', async () => {
    const local = await startMongoStandin();
    const clients = [new MongoClient(local.uri), new MongoClient(local.uri)];
    await Promise.all(clients.map((c) => c.connect()));
    await Promise.all(
      clients.map((c, ci) =>
        Promise.all(Array.from({ length: 10 }, (_, i) => c.db('p').collection('c').insertOne({ ci, i }))),
      ),
    );
    expect(await clients[0]?.db('p').collection('c').countDocuments()).toBe(20);
    expect(local.connectionCount()).toBeGreaterThanOrEqual(2);
    await local.close();
    expect(local.connectionCount()).toBe(0);
    await Promise.all(clients.map((c) => c.close()));
  });
});
